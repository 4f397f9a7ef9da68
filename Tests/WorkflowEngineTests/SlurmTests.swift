import Foundation
import ImageIO
import TestSupport
import Testing
import WorkflowEngine

/// Whether this machine can start the local Slurm of the tests.
let slurmIsInstalled = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/slurmctld")

/// `sdflow slurm` on a real single-node Slurm (scripts/slurm-local.sh; Debian's slurmctld, slurmd
/// and munge, which scripts/install-deps.sh installs): a 4-task array over 40 images writes every
/// output once, byte for byte what one process writes; a task cancelled mid-run and the script
/// submitted again finishes the rest without redoing what was done.
@Suite(.serialized, .enabled(if: slurmIsInstalled, "needs root and Slurm (scripts/install-deps.sh installs it)"))
struct SlurmTests {
    let folder = TemporaryFolder()
    static let repository = URL(fileURLWithPath: TestEngine.workflows).deletingLastPathComponent().path
    static let itemCount = 40, taskCount = 4

    /// Runs a command, returns its standard output; a non-zero exit is an error with its output.
    /// (posix_spawn and waitpid with output to files: Foundation's Process missed the exit of the
    /// script that starts the Slurm daemons and waited for ever.)
    @discardableResult
    func shell(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
        struct Failed: Error, CustomStringConvertible { let description: String }
        let outputFile = folder.file(".shell-out"), errorFile = folder.file(".shell-err")
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errorFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        let argv = (["/usr/bin/env", "-C", folder.path] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/usr/bin/env", &actions, nil, argv, envp) == 0 else { throw Failed(description: "cannot start \(arguments[0])") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let errors = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? ""
            throw Failed(description: "\(arguments.joined(separator: " ")) exited with status \(status): \(text)\(errors)")
        }
        return text
    }

    /// Outputs by file name.
    func outputs(_ path: String) -> [String: Data] {
        var result: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where !name.hasPrefix(".") {
            result[name] = try? Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
        }
        return result
    }

    /// Waits until no task of `job` is queued or running.
    func waitFor(job: String, environment: [String: String]) throws {
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline {
            if try shell(["squeue", "-h", "-j", job], environment: environment).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        Issue.record("job \(job) did not finish in 10 minutes")
    }

    func summaries(of job: String, in logs: String) throws -> [RunReport] {
        try FileManager.default.contentsOfDirectory(atPath: logs).filter { $0.hasSuffix(".json") && $0.contains("-\(job)_") }.sorted().map {
            try JSONDecoder().decode(RunReport.self, from: Data(contentsOf: URL(fileURLWithPath: logs + "/" + $0)))
        }
    }

    @Test func jobArrayWritesEveryOutputOnceAndAResubmissionFinishesACancelledTask() throws {
        // 40 different 64x64 photos.
        let photos = folder.file("photos")
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        for i in 0..<SlurmTests.itemCount {
            var image = Image(width: 64, height: 64, channels: 3)
            let p = image.pixels.mutablePointer()
            for j in 0..<(3 * 64 * 64) { p[j] = Float((j * 5 + i * 29) % 256) / 255 }
            try ImageFile.write(image, to: photos + String(format: "/photo_%02d.png", i))
        }
        let out = folder.file("out")
        let workflow = SlurmTests.repository + "/workflows/batch-img2img.yaml"
        let settings = ["checkpoint=" + TinyModel.folder, "input=" + photos, "output=" + out + "/{stem}.png", "steps=12"]

        // One process: the bytes every shard must reproduce (same output pattern: it is recorded in the PNGs).
        try shell([TestEngine.binary, "run", workflow, "--quiet", "--threads", "1", "--cache-dir", folder.file("cache-single")]
                  + settings.flatMap { ["--set", $0] })
        let single = outputs(out)
        #expect(single.count == SlurmTests.itemCount)
        try FileManager.default.removeItem(atPath: out)

        // The cluster.
        let cluster = folder.file("slurm")
        let export = try shell([SlurmTests.repository + "/scripts/slurm-local.sh", "start", cluster])
        let environment = ["SLURM_CONF": export.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "export SLURM_CONF=", with: "")]
        defer { _ = try? shell([SlurmTests.repository + "/scripts/slurm-local.sh", "stop", cluster]) }

        // Submit 4 tasks of one CPU each; cancel task 1 once it has written its first output.
        let logs = folder.file("logs")
        let submitted = try shell([TestEngine.binary, "slurm", workflow, "--tasks", String(SlurmTests.taskCount), "--cache-dir", folder.file("cache"),
                                   "--log-dir", logs, "--job-name", "photos", "--sbatch", "-c 1"] + settings.flatMap { ["--set", $0] },
                                  environment: environment)
        let job = try #require(submitted.split(separator: "\n").first?.split(separator: " ").dropFirst(2).first.map { String($0.dropLast()) },
                               "no job id in: \(submitted)")
        let taskOne = (0..<SlurmTests.itemCount).map { String(format: "photo_%02d.png", $0) }.filter { Shard.of($0, count: SlurmTests.taskCount) == 1 }
        let deadline = Date().addingTimeInterval(300)
        while Set(outputs(out).keys).isDisjoint(with: taskOne) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        try shell(["scancel", "\(job)_1"], environment: environment)
        try waitFor(job: job, environment: environment)

        let afterCancel = outputs(out)
        let doneByTaskOne = Set(afterCancel.keys).intersection(taskOne)
        #expect(!doneByTaskOne.isEmpty && doneByTaskOne.count < taskOne.count,
                "task 1 should have been cancelled mid-run: \(doneByTaskOne.count) of \(taskOne.count) written")
        #expect(afterCancel.count < SlurmTests.itemCount)
        var modified: [String: Date] = [:]
        for name in afterCancel.keys {
            modified[name] = try FileManager.default.attributesOfItem(atPath: out + "/" + name)[.modificationDate] as? Date
        }

        // Submitting the same script again finishes the rest.
        let again = try shell(["sbatch", "--parsable", logs + "/photos.sbatch"], environment: environment)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try waitFor(job: again, environment: environment)
        let final = outputs(out)
        #expect(final.count == SlurmTests.itemCount)
        #expect(final == single, "the array's outputs differ from one process's")
        for (name, date) in modified {
            #expect(try FileManager.default.attributesOfItem(atPath: out + "/" + name)[.modificationDate] as? Date == date, "\(name) was written again")
        }

        // What each task of the second job did: every item once; the ones already written computed nothing.
        let reports = try summaries(of: again, in: logs)
        #expect(reports.count == SlurmTests.taskCount)
        let items = reports.flatMap(\.items)
        #expect(items.map(\.source).sorted() == (0..<SlurmTests.itemCount).map { String(format: "photo_%02d.png", $0) })
        for item in items {
            if afterCancel[item.source] != nil {
                #expect(item.status == .cached && item.computed == 0, "\(item.source) was redone: \(item.status), \(item.computed) computed")
            } else {
                #expect(item.status == .done)
            }
        }
        #expect(Set(reports.compactMap(\.shard)) == Set((0..<SlurmTests.taskCount).map { "\($0)/\(SlurmTests.taskCount)" }))
    }
}

/// The sbatch script `sdflow slurm` writes (printed, so no Slurm is needed).
@Suite struct SlurmScriptTests {
    let folder = TemporaryFolder()

    /// A bundled workflow named by its bare name: the tasks run the very file that was validated,
    /// and write where `sdflow run NAME` would (./out/ of the folder it was submitted from).
    @Test func aBundledWorkflowByNameIsTheFileTheTasksRun() throws {
        let bundled = TestEngine.workflows + "/batch-img2img.yaml"
        let printed = try TestEngine.run(["slurm", "batch-img2img", "--tasks", "4", "--print"], in: folder.path)
        #expect(printed.status == 0, "\(printed.errors)")
        let command = try #require(printed.output.split(separator: "\n").first { $0.hasPrefix("exec ") })
        #expect(command.contains(" 'run' '\(URL(fileURLWithPath: bundled).standardizedFileURL.path)' "), "\(command)")
        #expect(command.contains("'--outputs-relative-to' '\(folder.path)/workflows'"), "\(command)")
        // What the tasks run resolves its outputs into ./out/ here, as `sdflow run batch-img2img` does.
        let explained = try TestEngine.run(["explain", bundled, "--outputs-relative-to", folder.path + "/workflows", "--summary", "-", "--no-cache"],
                                           in: folder.path)
        let byName = try TestEngine.run(["explain", "batch-img2img", "--summary", "-", "--no-cache"], in: folder.path)
        #expect(explained.status == 0 && byName.status == 0, "\(explained.errors) \(byName.errors)")
        let outputs = { (json: String) in
            try JSONDecoder().decode(RunReport.self, from: Data(json.utf8)).items.flatMap(\.outputs)
        }
        #expect(try outputs(explained.output) == outputs(byName.output))
        #expect(try outputs(byName.output).allSatisfy { $0.hasPrefix(folder.path + "/out/") }, "\(byName.output)")
    }
}
