import Foundation

/// Nanoseconds on the monotonic clock.
func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Percentile of sorted values (p in 0...100).
func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p / 100))]
}

/// Prints one `key=value` result line (parsed by the scripts).
func result(_ name: String, _ values: [(String, String)]) {
    print("RESULT \(name) " + values.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
}

func format(_ value: Double) -> String { String(format: "%.1f", value) }
