using Pipeline.Kernels;

namespace Pipeline.Model.Checkpoint;

/// <summary>
/// One decoder layer's weights, shapes checked against the config. Norms are [1, n] vectors.
/// VProj is null on full-attention layers with attention_k_eq_v (values reuse the key projection).
/// </summary>
public sealed record Gemma4LayerWeights(
    DenseWeight InputNorm,
    LinearWeight QProj,          // [heads*head_dim, hidden]
    LinearWeight KProj,          // [kv_heads*head_dim, hidden]
    LinearWeight? VProj,         // [kv_heads*head_dim, hidden]
    LinearWeight OProj,          // [hidden, heads*head_dim]
    DenseWeight QNorm,           // [1, head_dim]
    DenseWeight KNorm,           // [1, head_dim]
    DenseWeight PostAttentionNorm,
    DenseWeight PreFeedforwardNorm,
    DenseWeight PostFeedforwardNorm,
    LinearWeight Gate,           // [intermediate, hidden]
    LinearWeight Up,             // [intermediate, hidden]
    LinearWeight Down,           // [hidden, intermediate]
    float LayerScalar);
