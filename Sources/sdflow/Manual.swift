import ArgumentParser
import Foundation

/// `sdflow manual`: the man page, sdflow.1 in roff, made from the commands' own help text
/// (scripts/install.sh installs it as PREFIX/share/man/man1/sdflow.1).
struct Manual: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print sdflow's man page (roff).", shouldDisplay: false)

    func run() throws {
        print(Manual.page(), terminator: "")
    }

    static func page() -> String {
        let root = SDFlow.configuration
        var lines = [
            ".TH SDFLOW 1 \"\(ISO8601DateFormatter.string(from: Date(), timeZone: .gmt, formatOptions: [.withFullDate]))\" \"sdflow \(SDFlowVersion.number)\" \"User Commands\"",
            ".SH NAME", "sdflow \\- " + escaped(root.abstract),
            ".SH SYNOPSIS", ".B sdflow", "[\\fIFILE.yaml\\fR | \\fISUBCOMMAND\\fR] [\\fIOPTIONS\\fR]",
            ".SH DESCRIPTION", escaped(root.discussion),
            "Each subcommand's options follow; \\fBsdflow help SUBCOMMAND\\fR prints the same.",
        ]
        for command in root.subcommands where command.configuration.shouldDisplay {
            let name = command.configuration.commandName ?? String(describing: command).lowercased()
            lines += [".SH \"SDFLOW \(name.uppercased())\"", ".nf", escaped(SDFlow.helpMessage(for: command, columns: 78)), ".fi"]
        }
        lines += [
            ".SH ENVIRONMENT",
            ".TP", ".B SDFLOW_DATA", "The folder of sdflow's data (tokenizer/, workflows/, models/); by default PREFIX/share/sdflow next to PREFIX/bin/sdflow.",
            ".TP", ".B SDFLOW_THREADS", "Threads for numeric work (like \\-\\-threads).",
            ".TP", ".B SDFLOW_PLUGIN_PATH", "Colon-separated folders of node-pack plugins.",
            ".TP", ".B XDG_CACHE_HOME", "The result cache is $XDG_CACHE_HOME/sdflow (else ~/.cache/sdflow) unless \\-\\-cache\\-dir is given.",
            ".SH EXIT STATUS",
            "0 when everything succeeded, 1 when a node or batch item failed, 2 for an invalid workflow, 130 when stopped.",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Text made safe for roff: backslashes escaped, no line starting with a control character.
    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\e").split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(".") || $0.hasPrefix("'") ? "\\&" + $0 : String($0) }.joined(separator: "\n")
    }
}
