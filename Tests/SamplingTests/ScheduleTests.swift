import Foundation
import Sampling
import TestSupport
import Testing

/// Timesteps, sigmas and starting noise scales of every sampler against diffusers'
/// schedulers (Tests/Fixtures/schedules.json, written by tools/reference/fixtures_pipelines.py).
@Suite struct ScheduleTests {
    struct Entry: Decodable {
        let timesteps: [Double]
        let sigmas: [Double]?
        let init_noise_sigma: Double
    }

    static let kinds: [String: (SamplerKind, Bool)] = [
        "ddpm": (.ddpm, false), "ddim": (.ddim, false), "euler": (.euler, false), "euler_karras": (.euler, true),
        "euler_a": (.eulerAncestral, false), "dpmpp_2m": (.dpmPlusPlus2M, false), "dpmpp_2m_karras": (.dpmPlusPlus2M, true),
    ]

    @Test func schedulesMatchDiffusers() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("schedules.json")))
        let table = try JSONDecoder().decode([String: Entry].self, from: data)
        #expect(table.count == 7 * 3 * 5)
        var worst = 0.0
        for (key, expected) in table.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "/")
            let (kind, karras) = ScheduleTests.kinds[String(parts[0])]!
            let sampler = kind.make(steps: Int(parts[2])!, spacing: TimestepSpacing(rawValue: String(parts[1]))!, karras: karras)
            let timesteps = sampler.timesteps.map(Double.init)
            #expect(timesteps.count == expected.timesteps.count, "\(key): \(timesteps.count) timesteps, expected \(expected.timesteps.count)")
            guard timesteps.count == expected.timesteps.count else { continue }
            for (a, b) in zip(timesteps, expected.timesteps) {
                let error = abs(a - b) / Swift.max(abs(b), 1)
                worst = Swift.max(worst, error)
                #expect(error <= 2e-6, "\(key): timestep \(a) != \(b)")
            }
            if let sigmas = expected.sigmas {
                let ours = (sampler as? EulerSampler)?.sigmas ?? (sampler as? EulerAncestralSampler)?.sigmas
                    ?? (sampler as? DPMSolverPlusPlus2MSampler)?.sigmas ?? []
                #expect(ours.count == sigmas.count, "\(key): sigma count")
                for (a, b) in zip(ours.map(Double.init), sigmas) {
                    let error = abs(a - b) / Swift.max(abs(b), 1e-3)
                    worst = Swift.max(worst, error)
                    #expect(error <= 2e-6, "\(key): sigma \(a) != \(b)")
                }
            }
            #expect(abs(Double(sampler.initialNoiseScale) - expected.init_noise_sigma) <= 2e-6 * expected.init_noise_sigma, "\(key): init noise sigma")
        }
        print("schedules: worst relative difference from diffusers \(worst)")
    }

    @Test func trainingScheduleMatchesKnownValues() {
        let s = NoiseSchedule.sd15
        #expect(s.alphasCumprod.count == 1000)
        #expect(s.alphasCumprod[0] == 0.99915)
        #expect(abs(s.alphasCumprod[999] - 0.004660095) < 1e-9)
        #expect(abs(s.sigmas[999] - 14.614647) < 1e-5 && abs(s.sigmas[0] - 0.029167533) < 1e-8)
    }
}
