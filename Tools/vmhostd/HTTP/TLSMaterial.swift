import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The TLS certificate and key of the TCP listener: the configured PEM files, or a self-signed
/// P-256 pair generated into `STATE/tls/` at first start (names the host, localhost and the listen
/// address) and reused afterwards.
enum TLSMaterial {
    struct Error: Swift.Error, CustomStringConvertible { var description: String }

    static func configuration(certificate: String?, privateKey: String?, stateDirectory: String, hostName: String,
                              listenHost: String) throws -> TLSConfiguration {
        let (certificatePath, keyPath): (String, String)
        if let certificate, let privateKey {
            (certificatePath, keyPath) = (certificate, privateKey)
        } else if certificate != nil || privateKey != nil {
            throw Error(description: "api.certificate and api.private_key must be given together")
        } else {
            (certificatePath, keyPath) = try selfSigned(directory: "\(stateDirectory)/tls", hostName: hostName, listenHost: listenHost)
        }
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw Error(description: "cannot load the TLS certificate \(certificatePath) or key \(keyPath): \(error)")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    /// Paths of the generated pair, made now if missing.
    static func selfSigned(directory: String, hostName: String, listenHost: String) throws -> (String, String) {
        let certificatePath = "\(directory)/hostd.crt", keyPath = "\(directory)/hostd.key"
        if FileManager.default.fileExists(atPath: certificatePath) && FileManager.default.fileExists(atPath: keyPath) {
            return (certificatePath, keyPath)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName(hostName); OrganizationName("vmhostd") }
        var alternatives: [GeneralName] = [.dnsName(hostName), .dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]
        let octets = listenHost.split(separator: ".").compactMap { UInt8($0) }
        if octets.count == 4, octets != [0, 0, 0, 0] { alternatives.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(octets)))) }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(10 * 365 * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                SubjectAlternativeNames(alternatives)
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: .init(key))
        let certificatePEM = try certificate.serializeAsPEM().pemString
        let keyPEM = key.pemRepresentation
        guard FileManager.default.createFile(atPath: keyPath, contents: Data(keyPEM.utf8), attributes: [.posixPermissions: 0o600]),
              FileManager.default.createFile(atPath: certificatePath, contents: Data(certificatePEM.utf8), attributes: [.posixPermissions: 0o644])
        else { throw Error(description: "cannot write the generated certificate into \(directory)") }
        return (certificatePath, keyPath)
    }
}
