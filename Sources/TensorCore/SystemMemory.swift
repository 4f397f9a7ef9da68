import Foundation

/// How much memory this process can still take: the system's available memory
/// (`MemAvailable` in /proc/meminfo), or less when a cgroup (a container, a Slurm job) limits
/// the process to less.
public enum SystemMemory {
    /// Bytes available now, or nil when the system does not say.
    public static func available() -> Int? {
        var result = meminfo("MemAvailable")
        // cgroup v2: the limit of this process's group minus what the group uses.
        if let group = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8))?
            .split(separator: "\n").first(where: { $0.hasPrefix("0::") }).map({ String($0.dropFirst(3)) }) {
            let folder = "/sys/fs/cgroup" + group
            if let limit = number(folder + "/memory.max"), let used = number(folder + "/memory.current"), limit > used {
                result = Swift.min(result ?? Int.max, limit - used)
            }
        }
        return result
    }

    /// A /proc/meminfo field in bytes.
    static func meminfo(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
    }

    /// A file holding one number ("max" is no number).
    static func number(_ path: String) -> Int? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}
