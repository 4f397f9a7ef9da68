import DiffusionNodes
import Foundation
import ImageNodes
import NodeKit
import TestSupport
import WorkflowEngine

/// What the engine's test suites share: the built-in node registry, the repository's workflows
/// and the sdflow binary built next to the tests.
enum TestEngine {
    /// A registry with the built-in packs (images, diffusion).
    static func registry() throws -> NodeRegistry {
        var registry = NodeRegistry()
        try registry.register(ImageNodes.pack)
        try registry.register(DiffusionNodes.pack)
        return registry
    }

    /// The repository's workflows folder.
    static var workflows: String { Fixtures.folder.deletingLastPathComponent().deletingLastPathComponent().path + "/workflows" }

    /// Runs the sdflow binary in `folder` (with `environment` added to this process's); returns its
    /// exit status, standard output and standard error.
    static func run(_ arguments: [String], in folder: String, environment: [String: String] = [:]) throws
        -> (status: Int32, output: String, errors: String) {
        try runProcess(binary, arguments, in: folder, environment: environment)
    }

    /// Runs a program in `folder`; returns its exit status, standard output and standard error.
    static func runProcess(_ program: String, _ arguments: [String], in folder: String, environment: [String: String] = [:]) throws
        -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read both pipes at once, so that neither fills up while the other is read.
        final class Box: @unchecked Sendable { var data = Data() }
        let err = Box(), done = DispatchSemaphore(value: 0)
        Thread { err.data = errors.fileHandleForReading.readDataToEndOfFile(); done.signal() }.start()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err.data, as: UTF8.self))
    }

    /// The sdflow binary built next to the test bundle.
    static var binary: String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("sdflow").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("sdflow").path
    }
}
