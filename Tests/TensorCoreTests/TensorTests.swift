import TensorCore
import Testing

@Suite struct TensorTests {
    @Test func reshapeAndSliceAreViews() {
        let t = Tensor(shape: [2, 3, 2], values: (0..<12).map(Float.init))
        let r = t.reshaped([3, -1])
        #expect(r.shape == [3, 4])
        #expect(r[2, 3] == 11)
        let second = t.slice(1..<2)
        #expect(second.shape == [1, 3, 2])
        #expect(second.scalars == [6, 7, 8, 9, 10, 11])
        #expect(t.pointer + 6 == second.pointer)
    }

    @Test func copyOnWrite() {
        let a = Tensor(shape: [4], values: [1, 2, 3, 4])
        var b = a
        b.withUnsafeMutableBufferPointer { $0[0] = 10 }
        #expect(a.scalars == [1, 2, 3, 4])
        #expect(b.scalars == [10, 2, 3, 4])
        var view = a.slice(2..<4)
        view.withUnsafeMutableBufferPointer { $0[0] = 30 }
        #expect(a.scalars == [1, 2, 3, 4])
        #expect(view.scalars == [30, 4])
    }

    @Test func borrowedMemoryIsNeverWritten() {
        let values: [Float] = [1, 2, 3]
        let owner = values as AnyObject
        values.withUnsafeBufferPointer { buffer in
            var t = Tensor(shape: [3], borrowing: buffer.baseAddress!, owner: owner)
            t.apply { $0 * 2 }
            #expect(t.scalars == [2, 4, 6])
        }
        #expect(values == [1, 2, 3])
    }

    @Test func threadCountIsSettable() {
        let before = Parallel.threadCount
        Parallel.setThreadCount(1)
        #expect(Parallel.threadCount == 1)
        let x = Tensor(shape: [3, 5], values: (0..<15).map { Float($0) - 7 })
        let single = x.silu()
        Parallel.setThreadCount(before)
        #expect(x.silu().maxAbsDifference(single) == 0)
    }

    @Test func maxAbsDifferenceSeesNaN() {
        let a = Tensor(shape: [2], values: [1, .nan]), b = Tensor(shape: [2], values: [1, 2])
        #expect(a.maxAbsDifference(b).isNaN)
    }
}
