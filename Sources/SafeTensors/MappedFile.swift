import CKernels
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A whole file mapped read-only into memory, or a block of anonymous memory that holds what was
/// read from a file (a converted PyTorch checkpoint); unmapped when the last reference goes away.
/// `@unchecked Sendable`: every property is a constant, and the bytes are only read after `init`.
public final class MappedFile: @unchecked Sendable {
    /// The file's path, for error messages.
    public let path: String
    /// The first byte of the mapping (nil for an empty file).
    public let bytes: UnsafeRawPointer?
    /// The file size in bytes.
    public let size: Int
    /// Whether the bytes are anonymous memory rather than a file's pages: they cannot be dropped
    /// and faulted back in (`releasePages` leaves them alone).
    public let isAnonymous: Bool

    /// Address and size of every live mapping, for `releaseResidentPages`.
    private static let live = Mutex<[ObjectIdentifier: (address: Int, size: Int)]>([:])

    /// A file truncated or replaced while mapped makes reading it fail with SIGBUS: the handler
    /// (Files.c) names the file and exits with status 1 instead of crashing. Outputs and
    /// cache entries are written atomically, so what was written before stays whole.
    private static let sigbusHandler: Void = sdf_install_sigbus_handler()

    /// Drops the pages of every mapped file from this process's resident memory (madvise
    /// MADV_DONTNEED). The read-only mappings stay valid: later reads fault the pages back in from
    /// the page cache. Called before work that needs little of the mapped weights (the VAE decoder
    /// after the UNet), so the UNet's gigabytes do not add to the decoder's peak.
    public static func releaseResidentPages() {
        live.withLock { mappings in
            for (address, size) in mappings.values {
                _ = madvise(UnsafeMutableRawPointer(bitPattern: address), size, MADV_DONTNEED)
            }
        }
    }

    /// Drops the whole pages inside `offset ..< offset + count` from this process's resident
    /// memory (madvise MADV_DONTNEED; later reads fault them back in from the page cache).
    public func releasePages(offset: Int, count: Int) {
        guard let bytes, !isAnonymous, count > 0, offset >= 0, offset + count <= size else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: bytes) + offset + page - 1) / page * page
        let end = (Int(bitPattern: bytes) + offset + count) / page * page
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
    }

    /// Maps `path`; throws `SafeTensorsError.cannotOpen` with the system's reason.
    public init(path: String) throws {
        self.path = path
        isAnonymous = false
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "not a regular file")
        }
        size = Int(info.st_size)
        if size == 0 {
            bytes = nil
            return
        }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        bytes = UnsafeRawPointer(mapped)
        let entry = (address: Int(bitPattern: mapped), size: size)
        MappedFile.sigbusHandler
        MappedFile.live.withLock {
            $0[ObjectIdentifier(self)] = entry
            sdf_mapping_register(mapped, UInt(size), path)
        }
    }

    /// `size` bytes of zeroed anonymous memory, filled by `fill` (which gets the writable bytes)
    /// and then made read-only; `path` names the file the contents came from.
    public init(anonymousSize size: Int, path: String, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        self.path = path
        self.size = size
        isAnonymous = true
        guard size > 0 else {
            bytes = nil
            try fill(UnsafeMutableRawBufferPointer(start: nil, count: 0))
            return
        }
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "cannot allocate \(size) bytes: " + String(cString: strerror(errno)))
        }
        do {
            try fill(UnsafeMutableRawBufferPointer(start: mapped, count: size))
        } catch {
            munmap(mapped, size)
            throw error
        }
        mprotect(mapped, size, PROT_READ)
        bytes = UnsafeRawPointer(mapped)
    }

    deinit {
        guard let bytes else { return }
        if isAnonymous {
            munmap(UnsafeMutableRawPointer(mutating: bytes), size)
            return
        }
        MappedFile.live.withLock {
            $0[ObjectIdentifier(self)] = nil
            sdf_mapping_unregister(bytes)
        }
        munmap(UnsafeMutableRawPointer(mutating: bytes), size)
    }
}
