import Foundation
import NodeKit
import WorkflowEngine

/// Prints a run's progress: a live line with a progress bar and ETA on a terminal, plain lines
/// otherwise (logs, CI), nothing but errors with --quiet.
final class TerminalReporter: RunReporter {
    let quiet: Bool
    let interactive = isatty(fileno(stderr)) != 0
    private var stepStart: Date?
    private var current = ""
    private var lastPlainPercent = -1

    init(quiet: Bool) { self.quiet = quiet }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    func nodeStarted(_ name: String, type: String, item: BatchItem?, itemCount: Int?) {
        stepStart = Date()
        lastPlainPercent = -1
        current = item.map { "\(name) [\($0.index + 1)/\(itemCount ?? 0) \($0.stem)]" } ?? name
        guard !quiet else { return }
        if interactive { write("\r\u{1B}[K▸ \(current) (\(type))") } else { write("▸ \(current) (\(type))\n") }
    }

    func nodeProgress(_ name: String, completed: Int, total: Int) {
        guard !quiet, total > 0 else { return }
        let elapsed = Date().timeIntervalSince(stepStart ?? Date())
        let eta = completed > 0 ? elapsed / Double(completed) * Double(total - completed) : 0
        if interactive {
            let width = 24, filled = width * completed / total
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            write("\r\u{1B}[K▸ \(current) \(bar) \(completed)/\(total) ETA \(format(eta))")
        } else {
            let percent = 100 * completed / total
            if completed == 1 || percent / 10 != lastPlainPercent / 10 || completed == total {
                lastPlainPercent = percent
                write("  \(current): step \(completed)/\(total), ETA \(format(eta))\n")
            }
        }
    }

    func nodeFinished(_ report: NodeReport) {
        for error in report.errors { write((interactive ? "\r\u{1B}[K" : "") + "error: \(report.name): \(error)\n") }
        guard !quiet else { return }
        let what: String
        switch report.status {
        case .ran: what = "done"
        case .memoryHit: what = "reused"
        case .diskHit: what = "cached"
        case .mixed: what = "done (\(report.computed) computed, \((report.items ?? 0) - report.computed) cached)"
        case .partial: what = "partly failed" + (report.notes.isEmpty ? "" : " (" + report.notes.joined(separator: "; ") + ")")
        case .failed: what = "FAILED"
        case .skipped: what = "skipped"
        case .cancelled: what = "cancelled"
        case .willHit: what = "will be taken from the cache"
        case .willRun: what = "will run: " + report.notes.joined(separator: "; ")
        }
        let items = report.items.map { " ×\($0)" } ?? ""
        write((interactive ? "\r\u{1B}[K" : "") + "\(symbol(report.status)) \(report.name) (\(report.type))\(items): \(what) \(String(format: "%.2fs", report.seconds))\n")
    }

    func warning(_ message: String) {
        write((interactive ? "\r\u{1B}[K" : "") + "warning: \(message)\n")
    }

    func finish(_ report: RunReport, explain: Bool) {
        if !report.seeds.isEmpty && !quiet {
            write("seeds: " + report.seeds.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + "\n")
        }
        if quiet && report.succeeded { return }
        if explain { return }
        let computed = report.nodes.filter { $0.computed > 0 }.count
        let state = report.cancelled ? "stopped" : report.succeeded ? "finished" : "finished with errors"
        write("\(state) in \(String(format: "%.1fs", report.seconds)): \(computed) of \(report.nodes.count) nodes computed\n")
    }

    private func symbol(_ status: NodeReport.Status) -> String {
        switch status {
        case .ran, .mixed: return "✓"
        case .memoryHit, .diskHit, .willHit: return "="
        case .willRun: return "•"
        default: return "✗"
        }
    }

    private func format(_ seconds: Double) -> String {
        seconds >= 60 ? String(format: "%dm%02ds", Int(seconds) / 60, Int(seconds) % 60) : String(format: "%.0fs", seconds)
    }
}
