// Shows that ThreadSanitizer does not see Synchronization.Mutex on Linux (Swift 6.3.1): four
// threads update a dictionary only inside `withLock`, and TSan reports "Swift access race".
//   swiftc -sanitize=thread -g Tools/sanitize/MutexRace.swift -o /tmp/mutex-race && /tmp/mutex-race
// See tsan-suppressions.txt. Not part of any build.
import Synchronization
import Glibc

final class Box: Sendable {
    let table = Mutex<[Int: [UInt8]]>([:])
}
let box = Box()
final class Runner: @unchecked Sendable { var threads: [pthread_t] = [] }
let runner = Runner()
for t in 0..<4 {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(box).toOpaque()
    pthread_create(&thread, nil, { raw in
        let b = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        for i in 0..<20000 {
            b.table.withLock { t in
                var chunk = t[i % 7] ?? [UInt8](repeating: 0, count: 64)
                chunk[i % 64] &+= 1
                t[i % 7] = chunk
            }
        }
        return nil
    }, context)
    runner.threads.append(thread)
    _ = t
}
for t in runner.threads { pthread_join(t, nil) }
print(box.table.withLock { $0.count })
