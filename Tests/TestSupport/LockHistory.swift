/// The exclusive holds of one lock as host processes recorded them (`vmfs-testhost counter
/// --history`): one line `HOLD <host> <acquired ns> <released ns> <value>` per hold, times on
/// the machine's CLOCK_MONOTONIC, which every process shares.
///
/// A recorded hold lies inside the real one (acquired is taken after the lock was granted,
/// released before it is given up), so two recorded holds that overlap prove two hosts held the
/// lock at once.
public struct LockHistory: Sendable, Equatable {
    public struct Hold: Sendable, Equatable {
        public var host: String
        public var acquired: UInt64
        public var released: UInt64
        /// What the holder wrote (the counter after its increment).
        public var value: UInt64

        public init(host: String, acquired: UInt64, released: UInt64, value: UInt64) {
            self.host = host
            self.acquired = acquired
            self.released = released
            self.value = value
        }
    }

    /// Two holds that overlap in time.
    public struct Overlap: Sendable, Equatable, CustomStringConvertible {
        public var first: Hold
        public var second: Hold

        public var description: String {
            "\(first.host) held [\(first.acquired), \(first.released)] while \(second.host) held "
                + "[\(second.acquired), \(second.released)] (overlap \((min(first.released, second.released) - second.acquired) / 1000) µs)"
        }
    }

    public var holds: [Hold]
    /// Lines that are not a well-formed hold.
    public var malformed: [String]

    public init(holds: [Hold]) {
        self.holds = holds
        malformed = []
    }

    /// Parses the text of a history file.
    public init(text: String) {
        holds = []
        malformed = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count == 5, words[0] == "HOLD", let acquired = UInt64(words[2]), let released = UInt64(words[3]),
                  let value = UInt64(words[4]), acquired <= released else {
                malformed.append(String(line))
                continue
            }
            holds.append(Hold(host: String(words[1]), acquired: acquired, released: released, value: value))
        }
    }

    /// Every pair of holds whose intervals intersect (sorted by acquisition, each hold checked
    /// against every later one that starts before it ends).
    public func overlaps() -> [Overlap] {
        let sorted = holds.sorted { $0.acquired < $1.acquired }
        var found: [Overlap] = []
        for (index, hold) in sorted.enumerated() {
            for later in sorted[(index + 1)...] {
                guard later.acquired < hold.released else { break }
                found.append(Overlap(first: hold, second: later))
            }
        }
        return found
    }

    /// Values written by more than one hold: two increments that read the same counter.
    public func repeatedValues() -> [UInt64] {
        var seen: [UInt64: Int] = [:]
        for hold in holds { seen[hold.value, default: 0] += 1 }
        return seen.filter { $0.value > 1 }.keys.sorted()
    }
}
