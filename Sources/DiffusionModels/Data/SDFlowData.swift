import Foundation

/// The files sdflow needs at run time besides the binary — the CLIP vocabulary and HTML-entity
/// table, the bundled workflows, the demo model and the example inputs — found wherever sdflow
/// is: `$SDFLOW_DATA`, then `PREFIX/share/sdflow` next to an installed `PREFIX/bin/sdflow`, then
/// the checkout a development build runs from. The installed folder has the checkout's layout
/// (`workflows/`, `models/`, `examples/`) plus `tokenizer/`, which in the checkout is
/// `Sources/DiffusionModels/Resources`.
public enum SDFlowData {
    /// A data file that is nowhere to be found; says where sdflow looked.
    public struct Missing: Error, CustomStringConvertible {
        public let name: String
        public let searched: [String]
        public var description: String {
            "sdflow's data file '\(name)' was not found; looked in: " + searched.joined(separator: ", ")
                + ". Set SDFLOW_DATA to the folder that holds it (an installed sdflow keeps it in PREFIX/share/sdflow)."
        }
    }

    /// The folders searched, in order (each may not exist).
    public static var folders: [String] {
        var result: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["SDFLOW_DATA"], !explicit.isEmpty { result.append(explicit) }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        result.append(executable.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("share/sdflow").path)
        if let checkout = checkout(around: executable) { result.append(checkout) }
        return result
    }

    /// The path of `name` (e.g. `tokenizer/bpe_simple_vocab_16e6.txt.gz`, `workflows`), or an
    /// error that says where sdflow looked.
    public static func path(_ name: String) throws -> String {
        var searched: [String] = []
        for folder in folders {
            let candidate = folder + "/" + (isCheckout(folder) ? checkoutPath(name) : name)
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            searched.append(candidate)
        }
        throw Missing(name: name, searched: searched)
    }

    /// The checkout (a folder with this package's Package.swift) that holds `file`, if any.
    static func checkout(around file: URL) -> String? {
        var folder = file.deletingLastPathComponent()
        while folder.path != "/" {
            if isCheckout(folder.path) { return folder.path }
            folder = folder.deletingLastPathComponent()
        }
        return nil
    }

    static func isCheckout(_ folder: String) -> Bool {
        FileManager.default.fileExists(atPath: folder + "/Package.swift")
            && FileManager.default.fileExists(atPath: folder + "/Sources/DiffusionModels/Resources")
    }

    /// Where a data file lives in the checkout.
    static func checkoutPath(_ name: String) -> String {
        name.hasPrefix("tokenizer/") ? "Sources/DiffusionModels/Resources/" + name.dropFirst("tokenizer/".count) : name
    }
}
