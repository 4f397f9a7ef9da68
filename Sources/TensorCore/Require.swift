/// TensorCore's precondition. TensorCore alone is built with `-Ounchecked` in release builds, which
/// removes `precondition` and per-element bounds checks; the kernels' indices are safe because the
/// shapes they derive from are checked, so those checks use `fatalError`, which stays.
@inline(__always)
@usableFromInline
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
