import CKernels
import Foundation

/// Whole-file writes that either complete or leave nothing behind.
public enum AtomicFile {
    /// A failed write, naming the file.
    public struct WriteError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): cannot write: \(reason)" }
    }

    /// Writes `data` into an unnamed file in `path`'s folder (Linux's O_TMPFILE), flushes it,
    /// gives it a hidden temporary name and renames that over `path`. A process killed while it
    /// writes (even with SIGKILL) leaves no partial or temporary file behind; only the instant
    /// between naming and renaming could. Where the file system has no unnamed files, the
    /// temporary file is named from the start (and a killed write leaves it, for
    /// `ResultCache.evict` to remove).
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var fd = sdf_open_anonymous_file(folder)
        let anonymous = fd >= 0
        if !anonymous { fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw WriteError(path: path, reason: "cannot create a file in \(folder): \(String(cString: strerror(errno)))") }
        func fail(_ reason: String) -> WriteError {
            close(fd)
            if !anonymous { unlink(temporary) }
            return WriteError(path: path, reason: reason)
        }
        let written = data.withUnsafeBytes { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                offset += n
            }
            return true
        }
        guard written, fsync(fd) == 0 else { throw fail(String(cString: strerror(errno))) }
        testPause()
        if anonymous, linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, temporary, AT_SYMLINK_FOLLOW) != 0 {
            throw fail("cannot name the new file: \(String(cString: strerror(errno)))")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw WriteError(path: path, reason: reason)
        }
    }

    /// For tests that kill sdflow in the middle of a write: `SDFLOW_TEST_WRITE_PAUSE` seconds
    /// between writing a file's bytes and giving it its name.
    private static let pause = ProcessInfo.processInfo.environment["SDFLOW_TEST_WRITE_PAUSE"].flatMap(Double.init) ?? 0
    private static func testPause() { if pause > 0 { Thread.sleep(forTimeInterval: pause) } }
}
