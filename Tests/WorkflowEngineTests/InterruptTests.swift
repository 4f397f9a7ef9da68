import Foundation
import ImageIO
import SafeTensors
import TestSupport
import Testing
import WorkflowEngine

/// Ctrl-C and kill -9 in the middle of a run leave no partial output and no damaged cache entry.
@Suite(.serialized) struct InterruptTests {
    let folder = TemporaryFolder()

    /// Starts a long text-to-image run on `checkpoint`, waits until the denoise loop is running,
    /// calls `act` with the process, and returns the exit status and everything it printed.
    func runUntilSampling(checkpoint: String = TinyModel.folder, output: String, _ act: (Process) -> Void) throws -> (status: Int32, log: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEngine.binary)
        process.arguments = [TestEngine.workflows + "/txt2img.yaml", "--set", "checkpoint=" + checkpoint,
                             "--set", "steps=300", "--set", "output=" + folder.file(output), "--cache-dir", folder.file("cache")]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Wait for the sampler's progress lines.
        var log = ""
        let deadline = Date().addingTimeInterval(120)
        while !log.contains("generated: step") && Date() < deadline && process.isRunning {
            log += String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        }
        #expect(log.contains("generated: step"), "the run did not reach the sampler: \(log)")
        act(process)
        log += String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, log)
    }

    /// A long text-to-image run sent `signal` while it samples; its exit status.
    func interruptedRun(signal: Int32) throws -> Int32 {
        try runUntilSampling(output: "out/k.png") { kill($0.processIdentifier, signal) }.status
    }

    func expectNothingPartial() throws {
        let out = folder.file("out")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        #expect(leftovers.filter { !$0.hasPrefix(".") }.isEmpty, "partial outputs: \(leftovers)")
        // Every cache entry that exists is complete and valid.
        let cache = try ResultCache(folder: folder.file("cache"))
        for entry in cache.entries() {
            let path = folder.file("cache/v1/\(entry.key.prefix(2))/\(entry.key).safetensors")
            #expect((try? SafeTensorsFile(path: path)) != nil, "damaged cache entry \(entry.key)")
        }
    }

    /// A checkpoint truncated while the run has it mapped: a clear error naming the file (it was
    /// SIGBUS, exit 135), and nothing partial left behind.
    @Test func checkpointTruncatedWhileMappedIsAnErrorNamingIt() throws {
        let model = folder.file("model")
        try TinyModel.copyFolder(to: model)
        let weights = model + "/" + TinyModel.weightFiles["unet"]!
        let (status, log) = try runUntilSampling(checkpoint: model, output: "out/t.png") { _ in #expect(truncate(weights, 0) == 0) }
        #expect(status == 1, "exit \(status)")
        #expect(log.contains("error: \(weights): the file changed while sdflow was reading it"), "\(log.suffix(400))")
        try expectNothingPartial()
    }

    /// kill -9 while cache entries and outputs are being written (each write pauses before the
    /// file gets its name, so the kills land inside writes): no temporary file, no damaged entry,
    /// no partial output.
    @Test func killedDuringWritesLeavesNothingPartial() throws {
        let photos = folder.file("photos")
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        for i in 0..<6 { try ImageFile.write(Image(width: 32, height: 32, channels: 3, value: Float(i) / 6), to: photos + "/p\(i).png") }
        for delay in [0.5, 1.3] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestEngine.binary)
            process.arguments = [TestEngine.workflows + "/resize-folder.yaml", "--set", "input=" + photos, "--set", "output=" + folder.file("out/{stem}.png"),
                                 "--set", "width=16", "--set", "height=16", "--cache-dir", folder.file("cache"), "--quiet"]
            process.environment = ProcessInfo.processInfo.environment.merging(["SDFLOW_TEST_WRITE_PAUSE": "0.4"]) { $1 }
            try process.run()
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let cache = try ResultCache(folder: folder.file("cache"))
            var files: [String] = []
            for shard in (try? FileManager.default.contentsOfDirectory(atPath: folder.file("cache/v1"))) ?? [] {
                files += ((try? FileManager.default.contentsOfDirectory(atPath: folder.file("cache/v1/" + shard))) ?? []).map { "cache/\(shard)/\($0)" }
            }
            let outputs = (try? FileManager.default.contentsOfDirectory(atPath: folder.file("out"))) ?? []
            #expect((files + outputs).filter { $0.split(separator: "/").last!.hasPrefix(".") }.isEmpty, "left behind: \(files + outputs)")
            for entry in cache.entries() {
                guard case .hit = cache.read(entry.key) else { Issue.record("entry \(entry.key) does not check out"); continue }
            }
            for name in outputs { #expect((try? ImageFile.read(folder.file("out/" + name))) != nil, "\(name) is not whole") }
        }
    }

    @Test func ctrlCStopsCleanly() throws {
        let status = try interruptedRun(signal: SIGINT)
        #expect(status == 130)
        try expectNothingPartial()
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: folder.file("out"))) ?? []
        #expect(leftovers.isEmpty, "Ctrl-C left \(leftovers)")
    }

    @Test func killedRunLeavesNoPartialFiles() throws {
        _ = try interruptedRun(signal: SIGKILL)
        try expectNothingPartial()
    }
}
