import ImageIO
import NodeKit

// The library enums these nodes read as `.choice` parameters (`Param<ResizeMode>`).
extension ResizeMode: ChoiceParameter {}
extension ResampleFilter: ChoiceParameter {}
extension Image.MultipleFit: ChoiceParameter {}
