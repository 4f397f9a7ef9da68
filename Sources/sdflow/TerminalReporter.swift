import Foundation
import NodeKit
import WorkflowEngine

/// Prints a run's progress: a live line with a progress bar and ETA on a terminal, plain lines
/// otherwise (logs, CI), nothing but errors with --quiet.
final class TerminalReporter: RunReporter {
    let quiet: Bool
    let interactive = isatty(STDERR_FILENO) != 0
    private var stepStart: Date?
    private var current = ""
    private var lastPlainPercent = -1
    /// The batch: when it started, and the item being processed ("[3/40 photo_03]").
    private var batchStart: Date?
    private var itemLabel: String?
    private var batchETA = ""

    init(quiet: Bool) { self.quiet = quiet }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    func nodeStarted(_ name: String, type: String, item: BatchItem?, itemCount: Int?) {
        stepStart = Date()
        lastPlainPercent = -1
        current = itemLabel.map { "\($0) \(name)" } ?? name
        guard !quiet else { return }
        // In plain logs a batch item gets one line when it is done (and its steps), not one per node.
        if interactive { write("\r\u{1B}[K▸ \(current) (\(type))") } else if itemLabel == nil { write("▸ \(current) (\(type))\n") }
    }

    func nodeProgress(_ name: String, completed: Int, total: Int) { nodeProgress(name, completed: completed, total: total, note: nil) }

    func nodeProgress(_ name: String, completed: Int, total: Int, note: String?) {
        guard !quiet, total > 0 else { return }
        let note = note.map { " · \($0)" } ?? ""
        let elapsed = Date().timeIntervalSince(stepStart ?? Date())
        let eta = completed > 0 ? elapsed / Double(completed) * Double(total - completed) : 0
        if interactive {
            let width = 24, filled = width * completed / total
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            write("\r\u{1B}[K▸ \(current) \(bar) \(completed)/\(total) ETA \(format(eta))\(batchETA)\(note)")
        } else {
            let percent = 100 * completed / total
            if completed == 1 || percent / 10 != lastPlainPercent / 10 || completed == total {
                lastPlainPercent = percent
                write("  \(current): step \(completed)/\(total), ETA \(format(eta))\(note)\n")
            }
        }
    }

    func nodeFinished(_ report: NodeReport) {
        // A batch node's errors are per item, and were printed with their items.
        let errors = report.items == nil ? report.errors : report.errors.isEmpty ? [] : ["\(report.errors.count) item(s) failed (see above)"]
        for error in errors { write((interactive ? "\r\u{1B}[K" : "") + "error: \(report.name): \(error)\n") }
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
        case .notNeeded: what = "not run here: " + report.notes.joined(separator: "; ")
        }
        let items = report.items.map { " ×\($0)" } ?? ""
        write((interactive ? "\r\u{1B}[K" : "") + "\(symbol(report.status)) \(report.name) (\(report.type))\(items): \(what) \(String(format: "%.2fs", report.seconds))\n")
    }

    func itemStarted(_ item: BatchItem, position: Int, count: Int) {
        if batchStart == nil { batchStart = Date() }
        itemLabel = "[\(position)/\(count) \(item.stem)]"
        batchETA = ""
        if position > 1, let batchStart {
            let eta = Date().timeIntervalSince(batchStart) / Double(position - 1) * Double(count - position + 1)
            batchETA = " · batch ETA \(format(eta))"
        }
    }

    /// One line per item: what happened, where it went, and the batch's progress.
    func itemFinished(_ report: ItemReport, position: Int, count: Int) {
        itemLabel = nil
        let clear = interactive ? "\r\u{1B}[K" : ""
        for error in report.errors { write(clear + "error: \(report.stem) (\(report.source)): \(error)\n") }
        guard !quiet else { return }
        let elapsed = Date().timeIntervalSince(batchStart ?? Date())
        let eta = elapsed / Double(position) * Double(count - position)
        let what: String
        switch report.status {
        case .done: what = "done (\(report.computed) computed, \(report.cacheHits) cached)"
        case .cached: what = "up to date"
        case .failed: what = "FAILED"
        case .cancelled: what = "cancelled"
        case .willRun: what = "will run (\(report.computed) nodes to compute)"
        case .willHit: what = "will be taken from the cache"
        }
        let symbol = report.status == .failed || report.status == .cancelled ? "✗" : report.status == .cached ? "=" : "✓"
        let outputs = report.outputs.isEmpty ? "" : " → " + report.outputs.joined(separator: ", ")
        let rest = position < count ? ", ETA \(format(eta))" : ""
        write(clear + "\(symbol) [\(position)/\(count)] \(report.stem): \(what) \(String(format: "%.2fs", report.seconds))\(outputs)"
              + " (batch \(Int((100 * Double(position) / Double(count)).rounded()))%\(rest))\n")
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
        var line = "\(state) in \(String(format: "%.1fs", report.seconds)): \(computed) of \(report.nodes.count) nodes computed"
        if let total = report.batchSize {
            let count = { (status: ItemReport.Status) in report.items.filter { $0.status == status }.count }
            line += "; batch: \(count(.done)) items done, \(count(.cached)) up to date, \(count(.failed)) failed"
            line += report.shard.map { " (shard \($0): \(report.items.count) of \(total) items)" } ?? " (\(report.items.count) of \(total) items)"
        }
        write(line + "\n")
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
