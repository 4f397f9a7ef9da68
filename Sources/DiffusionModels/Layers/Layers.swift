import TensorCore

/// `torch.nn.Linear`: (..., In) -> (..., Out), weight (Out, In), optional bias (Out).
public struct Linear: Sendable {
    public let weight: Weight
    public let bias: Tensor?

    public init(_ p: ParameterScope, inputs: Int, outputs: Int, bias hasBias: Bool = true) throws {
        weight = try p.weight("weight", shape: [outputs, inputs])
        bias = hasBias ? try p.tensor("bias", shape: [outputs]) : nil
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight: weight.tensor(), bias: bias) }
}

/// `torch.nn.Conv2d` with groups = 1: (N, In, H, W) -> (N, Out, H', W').
public struct Conv2d: Sendable {
    public let weight: Weight
    public let bias: Tensor?
    public let stride: Int
    public let padding: Padding2D

    public init(_ p: ParameterScope, inputs: Int, outputs: Int, kernel: Int, stride: Int = 1,
                padding: Padding2D = .zero, bias hasBias: Bool = true) throws {
        weight = try p.weight("weight", shape: [outputs, inputs, kernel, kernel])
        bias = hasBias ? try p.tensor("bias", shape: [outputs]) : nil
        self.stride = stride
        self.padding = padding
    }

    /// A 3x3 convolution with padding 1 (the shape-preserving convolution of SD's blocks).
    public static func same3x3(_ p: ParameterScope, inputs: Int, outputs: Int) throws -> Conv2d {
        try Conv2d(p, inputs: inputs, outputs: outputs, kernel: 3, padding: .uniform(1))
    }

    /// The convolution, plus `residual` (the output's shape) and through ReLU when asked.
    public func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil, relu: Bool = false) -> Tensor {
        x.conv2d(weight: weight.tensor(), bias: bias, stride: stride, padding: padding, residual: residual, relu: relu)
    }

    /// The convolution of `x` upsampled 2x (nearest), as SD's upsamplers do: (N, In, H, W) ->
    /// (N, Out, 2H, 2W). Winograd reads the upsampling's tiles from `x` and skips the products
    /// that the repeated pixels make zero.
    public func upsampling(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight.tensor(), bias: bias, stride: stride, padding: padding, upsampling: true)
    }
}

extension Conv2d {
    /// The convolution of images stored channels last, (N, H, W, In) -> (N, H', W', Out), plus
    /// `residual` and through ReLU when asked, of `x` upsampled 2x (nearest) with `upsampling`:
    /// 3x3 with stride 1 and padding 1 (`Tensor.conv3x3ChannelsLast`), or 1x1 without either.
    func channelsLast(_ x: Tensor, adding residual: Tensor? = nil, relu: Bool = false, upsampling: Bool = false) -> Tensor {
        let kernel = weight.shape[2]
        if kernel == 1 && !upsampling {
            precondition(stride == 1 && padding == .zero, "Conv2d.channelsLast: 1x1 with stride \(stride), padding \(padding)")
            var y = x.conv1x1ChannelsLast(weight: weight.tensor(), bias: bias)
            if let residual { y += residual }
            if relu { y.applyReLU() }
            return y
        }
        precondition(kernel == 3 && stride == 1 && padding == .uniform(1), "Conv2d.channelsLast: \(weight.shape) with stride \(stride), padding \(padding)")
        return x.conv3x3ChannelsLast(weight: weight.tensor(), bias: bias, residual: residual, relu: relu, upsampling: upsampling)
    }
}

/// `torch.nn.GroupNorm` over NCHW, optionally fused with the SiLU that follows it.
public struct GroupNorm: Sendable {
    public let weight: Tensor, bias: Tensor
    public let groups: Int
    public let epsilon: Float

    public init(_ p: ParameterScope, channels: Int, groups: Int, epsilon: Float) throws {
        weight = try p.tensor("weight", shape: [channels])
        bias = try p.tensor("bias", shape: [channels])
        self.groups = groups
        self.epsilon = epsilon
    }

    public func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        x.groupNorm(groups: groups, weight: weight, bias: bias, epsilon: epsilon, fusedSiLU: silu)
    }
}

/// `torch.nn.LayerNorm` over the last axis.
public struct LayerNorm: Sendable {
    public let weight: Tensor, bias: Tensor
    public let epsilon: Float

    public init(_ p: ParameterScope, width: Int, epsilon: Float = 1e-5) throws {
        weight = try p.tensor("weight", shape: [width])
        bias = try p.tensor("bias", shape: [width])
        self.epsilon = epsilon
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, epsilon: epsilon) }
}
