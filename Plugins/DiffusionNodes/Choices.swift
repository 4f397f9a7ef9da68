import DiffusionModels
import NodeKit
import Sampling
import TensorCore

// The library enums these nodes read as `.choice` parameters (`Param<SamplerKind>`).
extension SamplerKind: ChoiceParameter {}
extension PromptWeighting: ChoiceParameter {}
extension Tensor.Interpolation: ChoiceParameter {}
