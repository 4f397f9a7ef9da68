import ArgumentParser
import DiffusionModels
import Foundation
import WorkflowEngine

/// The workflows that come with sdflow (`workflows/` of the checkout, `PREFIX/share/sdflow/workflows`
/// when installed), run by name: `sdflow run inpaint`.
enum BundledWorkflows {
    /// The bundled workflow files, by name (file name without `.yaml`).
    static func all() throws -> [(name: String, path: String)] {
        let folder = try SDFlowData.path("workflows")
        return try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { (String($0.dropLast(".yaml".count)), folder + "/" + $0) }
    }

    /// The bundled workflow a command-line argument names: a bare name (or name.yaml) that is not a file here.
    static func path(named argument: String) -> String? {
        guard !argument.contains("/"), !FileManager.default.fileExists(atPath: argument) else { return nil }
        let name = argument.hasSuffix(".yaml") ? String(argument.dropLast(".yaml".count)) : argument
        return (try? all())?.first { $0.name == name }?.path
    }
}

/// `sdflow workflows`: lists the bundled workflows.
struct WorkflowsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workflows",
                                                    abstract: "List the bundled workflows (run one with `sdflow run NAME`).")

    func run() throws {
        let workflows = try BundledWorkflows.all()
        let width = workflows.map(\.name.count).max() ?? 0
        for (name, path) in workflows {
            let summary = (try? Workflow.load(path: path).summary) ?? nil
            print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + (summary ?? ""))
        }
        if let first = workflows.first {
            print("\nfrom \(URL(fileURLWithPath: first.path).deletingLastPathComponent().path); run one with `sdflow run NAME`,"
                  + " e.g. `sdflow run \(first.name)`; its outputs go to ./out/")
        }
    }
}
