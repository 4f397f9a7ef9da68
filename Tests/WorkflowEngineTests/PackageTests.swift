import Foundation
import TestSupport
import Testing
import WorkflowEngine

/// The package's shape: every module a target imports is a dependency it declares in
/// Package.swift (SwiftPM builds some undeclared imports by luck of the build order, and an
/// outside package depending on one of our libraries would not).
struct PackageTests {
    /// The checkout's root folder.
    static let root = Fixtures.folder.deletingLastPathComponent().deletingLastPathComponent()

    /// Modules every target may import: the toolchain's.
    static let system: Set<String> = ["Foundation", "Dispatch", "Glibc", "Synchronization", "Testing", "XCTest", "Darwin"]

    @Test func everyImportIsADeclaredDependency() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        // Each target: its name, its dependencies' names (targets, and products by name), its folder.
        let target = try Regex(#"\.(?:target|testTarget|executableTarget)\(name: "(\w+)"(?:, dependencies: \[([^\]]*)\])?(?:[^\n]*?path: "([^"]+)")?"#)
        let product = try Regex(#"\.product\(name: "(\w+)""#), quoted = try Regex(#""(\w+)""#)
        var checked = 0
        for match in manifest.matches(of: target) {
            let name = String(match.output[1].substring ?? "")
            let list = String(match.output[2].substring ?? "")
            var declared = Set(list.matches(of: quoted).compactMap { $0.output[1].substring.map(String.init) })
            declared.formUnion(list.matches(of: product).compactMap { $0.output[1].substring.map(String.init) })
            let folder = match.output[3].substring.map(String.init)
                ?? (name.hasSuffix("Tests") ? "Tests/\(name)" : "Sources/\(name)")
            let imports = try Self.imports(in: Self.root.appendingPathComponent(folder))
            let undeclared = imports.subtracting(declared).subtracting(Self.system).subtracting([name])
            #expect(undeclared.isEmpty, "\(name) imports \(undeclared.sorted()) without declaring them in Package.swift")
            checked += 1
        }
        #expect(checked >= 20, "found only \(checked) targets in Package.swift")
    }

    /// The modules the Swift files under `folder` import.
    static func imports(in folder: URL) throws -> Set<String> {
        var modules = Set<String>()
        let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            guard file.pathExtension == "swift" else { continue }
            // Imports start a line (the plugin template's, inside string literals, are indented).
            for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") where !line.hasPrefix(" ") {
                let words = line.split(separator: " ")
                guard let i = words.firstIndex(of: "import"), words[..<i].allSatisfy({ $0.hasPrefix("@") }), i + 1 < words.count else { continue }
                modules.insert(String(words[i + 1]))
            }
        }
        return modules
    }
}

/// docs/nodes.md is the built-in packs' reference as `sdflow nodes --markdown` prints it.
struct NodeReferenceTests {
    @Test func docsNodesIsCurrent() throws {
        let file = PackageTests.root.appendingPathComponent("docs/nodes.md")
        let expected = NodeReference.markdown(try TestEngine.registry()) + "\n"
        let current = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        #expect(current == expected, "docs/nodes.md is out of date: run `swift run sdflow nodes --markdown > docs/nodes.md`")
    }
}
