import Dispatch
import Foundation

/// Turns POSIX signals into a callback on a dispatch queue, for a clean shutdown on SIGTERM/SIGINT.
public final class SignalTrap {
    private var sources: [DispatchSourceSignal] = []

    public init(signals: [Int32], handler: @escaping (Int32) -> Void) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            sources.append(source)
        }
    }
}
