import Foundation
import NodeKit

/// The files each execution of an output node writes, resolved before anything runs, so that two
/// outputs (two batch items, or two nodes) that would write one file are refused instead of one
/// silently replacing the other; and the files this run has written, which it never replaces.
struct OutputFiles {
    /// Files by `key(node, item)`.
    private var planned: [String: [String]] = [:]
    /// Files written by this run.
    var written = Set<String>()

    private static func key(_ node: String, _ item: BatchItem?) -> String { item.map { "\(node)#\($0.index)" } ?? node }

    /// The files one execution of `node` writes (none for nodes that write nothing).
    func planned(_ node: String, _ item: BatchItem?) -> [String] { planned[Self.key(node, item)] ?? [] }

    mutating func plan(_ node: String, _ item: BatchItem?, _ files: [String]) { planned[Self.key(node, item)] = files }

    /// Why `file` cannot be written, when a path on its way is taken: the file is a folder, or a
    /// folder it would go in is a file.
    static func unwritable(_ file: String) -> String? {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: file, isDirectory: &isFolder), isFolder.boolValue { return "it is a folder" }
        var parent = URL(fileURLWithPath: file).deletingLastPathComponent()
        while parent.path != "/" {
            if FileManager.default.fileExists(atPath: parent.path, isDirectory: &isFolder) {
                return isFolder.boolValue ? nil : "\(parent.path) is a file, not a folder"
            }
            parent = parent.deletingLastPathComponent()
        }
        return nil
    }
}

extension Executor {
    /// Where each execution of an output node writes (planned before anything runs); returns
    /// the problems: two executions writing one file, or a path that cannot be resolved.
    func planOutputs(_ sinks: [Graph.Node], plan: ExecutionPlan, batch: Batch) -> [String] {
        var writer: [String: String] = [:]
        var problems: [String] = []
        for node in sinks {
            let name = node.name
            let entries: [Batch.Entry?] = plan.perItemNames.contains(name) ? batch.entries : [nil]
            for entry in entries {
                let parameters = keys.parameters(of: node, item: entry?.item)
                let context = ExecutionContext(executor: self, node: node, parameters: parameters, values: [:], key: "", item: entry?.item)
                let files: [String]
                do {
                    if let implementation = node.entry.implementation.files {
                        files = try implementation.paths(context).map { URL(fileURLWithPath: $0).standardizedFileURL.path }
                    } else {
                        files = node.description.parameters.filter { if case .outputPath = $0.kind { return true }; return false }
                            .compactMap { parameters[$0.name]?.description }
                    }
                } catch {
                    problems.append("'\(name)': \(error)")
                    break
                }
                let who = entry.map { "'\(name)' for \($0.source)" } ?? "'\(name)'"
                for file in files {
                    if let why = OutputFiles.unwritable(file) {
                        problems.append("\(who) cannot write \(file): \(why)")
                    } else if let other = writer[file] {
                        problems.append("\(other) and \(who) would both write \(file); give each its own file (e.g. {stem} or {index} in the path)")
                    } else {
                        writer[file] = who
                    }
                }
                self.files.plan(name, entry?.item, files)
            }
        }
        if problems.count > 10 { problems = Array(problems.prefix(10)) + ["... and \(problems.count - 10) more"] }
        return problems
    }
}
