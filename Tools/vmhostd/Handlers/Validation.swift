import HostAgent

/// Checks of request values the generated code does not enforce (the spec's minimum and maximum
/// are documentation to it): every number from a client is checked here before it is converted.
enum Validation {
    /// `value` as an unsigned number, or a 400 naming `field` when it is negative.
    static func nonNegative(_ value: Int64?, field: String) throws(AgentError) -> UInt64? {
        guard let value else { return nil }
        guard value >= 0 else { throw AgentError(.invalidArgument, "\(field) is \(value); it cannot be negative", field: field) }
        return UInt64(value)
    }

    static func nonNegative(_ value: Int?, field: String) throws(AgentError) -> UInt64? {
        try nonNegative(value.map(Int64.init), field: field)
    }

    /// `value` within `range`, or a 400 naming `field`.
    static func within(_ value: Int?, _ range: ClosedRange<Int>, field: String) throws(AgentError) -> Int? {
        guard let value else { return nil }
        guard range.contains(value) else {
            throw AgentError(.invalidArgument, "\(field) is \(value); it must be \(range.lowerBound) – \(range.upperBound)", field: field)
        }
        return value
    }
}
