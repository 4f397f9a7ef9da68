import CKernels
import Synchronization

/// The memory behind one or more `Tensor` views: either owned (64-byte aligned heap memory)
/// or borrowed from an owner such as a memory-mapped file, in which case it is read-only.
/// `@unchecked Sendable`: its memory is written only through a `Tensor` that holds the one
/// reference (copy-on-write), or by parallel loops on disjoint ranges before it is shared.
@usableFromInline
final class TensorStorage: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutablePointer<Float>
    @usableFromInline let count: Int
    @usableFromInline let isReadOnly: Bool
    private let owner: AnyObject?

    @usableFromInline
    init(count: Int, zeroed: Bool) {
        let bytes = Swift.max(count, 1) * MemoryLayout<Float>.stride
        let raw = BufferPool.allocate(byteCount: bytes)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
        base = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
        self.count = count
        isReadOnly = false
        owner = nil
    }

    init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        base = UnsafeMutablePointer(mutating: pointer)
        self.count = count
        isReadOnly = true
        self.owner = owner
    }

    deinit {
        if owner == nil {
            BufferPool.release(UnsafeMutableRawPointer(base), byteCount: Swift.max(count, 1) * MemoryLayout<Float>.stride)
        }
    }
}

/// Large blocks freed recently, kept for the next allocation of the same size. A denoise loop
/// allocates the same shapes every step; without reuse, glibc maps every block over 32 MB afresh
/// and the kernel zero-fills each page on first touch (measured: a fifth of a UNet step's CPU
/// time in page faults). Blocks under 1 MB go straight to malloc; at most `capacity` bytes are
/// kept, the least recently freed go first.
public enum BufferPool {
    /// Bytes kept for reuse at most: `ComputeSettings.poolCapacity` of the code that frees, 512 MB
    /// by default, or more where speed matters more than memory (the fast mode keeps 2 GB: a
    /// 512x512 UNet step frees and re-requests blocks of over 1 GB in all, and each block the pool
    /// cannot keep comes back as fresh zero-filled pages). The pool itself is process-wide: blocks
    /// freed by one run serve the next.
    public static var capacity: Int { ComputeSettings.current.poolCapacity }
    static let minimumBytes = 1 << 20
    static let granularity = 64 << 10

    /// The kept blocks, oldest first, by address (a plain number, so that the lock's state is Sendable).
    private struct Free { var blocks: [(bytes: Int, address: UInt)] = []; var bytes = 0 }
    private static let free = Mutex(Free())

    /// 64-byte aligned memory of at least `byteCount` bytes, reused when a block of that size is free.
    static func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        guard byteCount >= minimumBytes else { return .allocate(byteCount: byteCount, alignment: 64) }
        let bytes = rounded(byteCount)
        let reused = free.withLock { pool -> UInt? in
            guard let i = pool.blocks.lastIndex(where: { $0.bytes == bytes }) else { return nil }
            pool.bytes -= bytes
            return pool.blocks.remove(at: i).address
        }
        return reused.flatMap { UnsafeMutableRawPointer(bitPattern: $0) } ?? .allocate(byteCount: bytes, alignment: 64)
    }

    /// Returns memory from `allocate(byteCount:)`, keeping large blocks for reuse.
    static func release(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        guard byteCount >= minimumBytes else { return pointer.deallocate() }
        let bytes = rounded(byteCount)
        let address = UInt(bitPattern: pointer), capacity = capacity
        let evicted = free.withLock { pool -> [UInt] in
            pool.blocks.append((bytes, address))
            pool.bytes += bytes
            var evicted: [UInt] = []
            while pool.bytes > capacity, !pool.blocks.isEmpty {
                let oldest = pool.blocks.removeFirst()
                pool.bytes -= oldest.bytes
                evicted.append(oldest.address)
            }
            return evicted
        }
        for block in evicted { UnsafeMutableRawPointer(bitPattern: block)?.deallocate() }
    }

    /// Bytes currently kept for reuse.
    public static var keptBytes: Int { free.withLock { $0.bytes } }

    /// Frees every kept block (e.g. before a long idle period).
    public static func trim() {
        let all = free.withLock { pool -> [UInt] in
            defer { pool = Free() }
            return pool.blocks.map(\.address)
        }
        for block in all { UnsafeMutableRawPointer(bitPattern: block)?.deallocate() }
    }

    private static func rounded(_ bytes: Int) -> Int { (bytes + granularity - 1) / granularity * granularity }

    /// Gives the C heap's free pages back to the system (glibc's `malloc_trim`). Memory freed on
    /// one thread after being allocated on another stays in the allocating thread's arena, and
    /// without this a long batch's resident size creeps up item after item (measured: VAE
    /// round trips of 64x64 images on 2 threads, 84 MB after 50 items, 249 MB after 500).
    public static func releaseFreeHeapPages() {
        sdf_release_free_heap_pages()
    }
}
