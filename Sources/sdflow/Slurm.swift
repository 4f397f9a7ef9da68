import ArgumentParser
import Foundation
import WorkflowEngine

/// `sdflow slurm WORKFLOW --tasks N`: runs a workflow's batches as a Slurm job array. Task I runs
/// `sdflow run WORKFLOW --shard I/N` with a shared cache folder; Slurm starts, retries and
/// cancels the tasks. Submitting the same script again after failures or `scancel` finishes only
/// what is missing: every shard skips the items whose output is already written with the same
/// cache key, and takes what earlier tasks computed from the shared cache.
struct SlurmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slurm",
        abstract: "Run a workflow's batch as a Slurm job array (one shard per task).",
        discussion: """
            Writes an sbatch script (into --log-dir) and submits it with sbatch, or prints it with --print. \
            Task $SLURM_ARRAY_TASK_ID runs `sdflow run WORKFLOW --shard TASK/N`; all tasks share --cache-dir, \
            which must be on a file system every node sees, as must the workflow's inputs and outputs. \
            Resubmit the script (`sbatch FILE`) to finish what failed or was cancelled.
            """)

    @OptionGroup var options: WorkflowOptions

    @Option(help: "The number of array tasks (shards).")
    var tasks: Int

    @Option(parsing: .unconditional, help: ArgumentHelp("More sbatch options, written as #SBATCH lines (e.g. \"-p gpu --time=2:00:00 -c 4\").", valueName: "ARGS"))
    var sbatch: String = ""

    @Flag(help: "Print the script instead of writing and submitting it.")
    var print = false

    @Option(help: "The cache folder every task shares (default: $XDG_CACHE_HOME/sdflow or ~/.cache/sdflow).")
    var cacheDir: String?

    @Option(help: "Where the script, the tasks' logs and their JSON summaries go.")
    var logDir: String = "sdflow-slurm"

    @Option(help: "The job's name (default: sdflow-WORKFLOW).")
    var jobName: String?

    @Flag(help: "Run the tasks in the fast mode (see `sdflow run --help`).")
    var fast = false

    func validate() throws {
        guard tasks >= 1 else { throw ValidationError("--tasks must be at least 1") }
    }

    func run() throws {
        // Check the workflow here, not in N job logs.
        _ = try options.checkedGraph(registry: try Engine.registry(pluginFolders: options.plugins))
        let here = FileManager.default.currentDirectoryPath
        let logs = Graph.resolve(logDir, base: here)
        let name = jobName ?? "sdflow-" + URL(fileURLWithPath: options.workflow).deletingPathExtension().lastPathComponent
        // The tasks run exactly the file validated here (a bundled workflow's, for a bare name),
        // with its outputs starting where they would for `sdflow run` in this folder.
        let (workflow, outputFolder) = options.source()
        let script = SlurmScript(
            sdflow: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
            workflow: Graph.resolve(workflow, base: here), outputFolder: outputFolder, overrides: options.overrides,
            plugins: options.plugins.map { Graph.resolve($0, base: here) }, tasks: tasks, jobName: name,
            cacheFolder: Graph.resolve(cacheDir ?? ResultCache.defaultFolder, base: here), logFolder: logs,
            workingFolder: here, fast: fast, sbatchOptions: SlurmScript.directives(sbatch)
        ).text
        if print {
            Swift.print(script, terminator: "")
            return
        }
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let file = logs + "/" + name + ".sbatch"
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sbatch", "--parsable", file]
        let output = Pipe()
        process.standardOutput = output
        do { try process.run() } catch {
            throw ValidationError("could not run sbatch (\(error)); the script is \(file)")
        }
        let jobID = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("sbatch failed (exit \(process.terminationStatus)); the script is \(file)")
        }
        Swift.print("submitted job \(jobID): \(tasks) tasks of \(options.workflow)")
        Swift.print("logs and summaries: \(logs)/\(name)-\(jobID.split(separator: ";").first ?? "")_*.{out,json}")
        Swift.print("to finish what fails or is cancelled: sbatch \(file)")
    }
}

/// The text of an sbatch job-array script that runs one shard per task.
struct SlurmScript {
    var sdflow: String
    var workflow: String
    /// Where the workflow's relative output paths start, when not at its own folder.
    var outputFolder: String?
    var overrides: [String]
    var plugins: [String]
    var tasks: Int
    var jobName: String
    var cacheFolder: String
    var logFolder: String
    var workingFolder: String
    var fast: Bool
    /// Extra `#SBATCH` lines' options.
    var sbatchOptions: [String]

    var text: String {
        var arguments: [String] = [sdflow, "run", workflow]
        if let outputFolder { arguments += ["--outputs-relative-to", outputFolder] }
        arguments += ["--cache-dir", cacheFolder] + overrides.flatMap { ["--set", $0] } + plugins.flatMap { ["--plugins", $0] }
        if fast { arguments.append("--fast") }
        arguments = arguments.map(SlurmScript.quoted)
        let summary = SlurmScript.quoted(logFolder + "/" + jobName) + "-\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\".json"
        var lines = [
            "#!/bin/bash",
            "#SBATCH --job-name=\(jobName)",
            "#SBATCH --array=0-\(tasks - 1)",
            "#SBATCH --output=\(logFolder)/%x-%A_%a.out",
        ]
        lines += sbatchOptions.map { "#SBATCH \($0)" }
        lines += [
            "# Written by `sdflow slurm`: array task I runs shard I/\(tasks) of the workflow's batches.",
            "# Submitting this file again (sbatch FILE) after failures or scancel finishes only what is missing:",
            "# outputs already written with the same cache key are left alone, results in the cache are reused.",
            "set -euo pipefail",
            "cd \(SlurmScript.quoted(workingFolder))",
            "exec " + arguments.joined(separator: " ") + " \\",
            "    --shard \"${SLURM_ARRAY_TASK_ID}/\(tasks)\" ${SLURM_CPUS_PER_TASK:+--threads \"$SLURM_CPUS_PER_TASK\"} \\",
            "    --summary \(summary)",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// `'text'` for the shell.
    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// sbatch options from one string: each word starting with `-` begins an option, and the
    /// words after it (its value) go with it (`-p debug -c 2` -> `-p debug`, `-c 2`).
    static func directives(_ text: String) -> [String] {
        var result: [String] = []
        for word in text.split(whereSeparator: \.isWhitespace).map(String.init) {
            if word.hasPrefix("-") || result.isEmpty { result.append(word) } else { result[result.count - 1] += " " + word }
        }
        return result
    }
}
