import ArgumentParser
import Foundation
import Synchronization
import VaultCore

/// How long jobs show their progress (on stderr, so standard output stays the result).
enum ProgressMode: String, ExpressibleByArgument, CaseIterable {
    /// A line redrawn in place on a terminal; nothing when stderr is not one.
    case auto
    /// One JSON event per line, for scripts and systemd.
    case json
    case none
}

struct ProgressOptions: ParsableArguments {
    @Option(help: "auto (a line on a terminal, nothing otherwise), json (one event per line on stderr) or none.")
    var progress: ProgressMode = .auto

    func printer(_ label: String = "") -> ProgressPrinter { ProgressPrinter(label: label, mode: progress) }
}

/// Shows progress events: a line redrawn in place (bytes or chunks, rate, ETA), cleared
/// before any other output, or JSON lines.
final class ProgressPrinter: Sendable {
    private enum Style { case line, json, quiet }
    private let style: Style
    private let label: String
    /// Whether a progress line is on the terminal now, to be cleared before other output.
    private let drawn = Atomic<Bool>(false)

    init(label: String, mode: ProgressMode = .auto) {
        self.label = label
        switch mode {
        case .auto: style = isatty(STDERR_FILENO) == 1 ? .line : .quiet
        case .json: style = .json
        case .none: style = .quiet
        }
    }

    func callback() -> @Sendable (BackupProgress) -> Void {
        switch style {
        case .quiet: return { _ in }
        case .json:
            return { progress in
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                guard let line = try? encoder.encode(progress) else { return }
                FileHandle.standardError.write(line + Data([0x0A]))
            }
        case .line:
            return { [self] progress in
                let what = progress.label.isEmpty ? label : progress.label
                let amount: String
                switch progress.unit {
                case .bytes:
                    amount =
                        progress.total > 0
                        ? "\(Units.formatSize(progress.done)) / \(Units.formatSize(progress.total))"
                        : Units.formatSize(progress.done)
                case .chunks:
                    amount = "\(progress.done) / \(progress.total) chunks"
                }
                let rate = progress.unit == .bytes ? "  \(Units.formatSize(Int64(progress.rate)))/s" : ""
                let eta = progress.remaining.map { String(format: "  ETA %d:%02d", Int($0) / 60, Int($0) % 60) } ?? ""
                drawn.store(true, ordering: .relaxed)
                FileHandle.standardError.write(Data("\r\u{1B}[K\(what): \(amount)\(rate)\(eta)".utf8))
            }
        }
    }

    /// Clears the progress line, if one is drawn, so the next output starts on a clean line.
    func clear() {
        if style == .line, drawn.exchange(false, ordering: .relaxed) {
            FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        }
    }
}
