using System.Text.Json.Nodes;
using Pipeline.Model.Checkpoint;

namespace Pipeline.Model.Tests.Checkpoint;

/// <summary>
/// A small Gemma-4 checkpoint built in memory (hidden 64, 2 layers: sliding then full with K=V,
/// vocab 256) in the UD-Q2_K_XL recipe (embed/q/k/v 4-bit, gate/up 2-bit by default, down 3-bit,
/// o_proj dense) or dense bf16. Tests break one thing, write it to a temp folder and load it.
/// Tensor bytes are random: only the structure matters here.
/// </summary>
internal sealed class SyntheticCheckpoint
{
    public const int Hidden = 64, Layers = 2, Intermediate = 128, Heads = 4, KvHeads = 2, HeadDim = 32, GlobalHeadDim = 64, Vocab = 256;

    private readonly Random _random = new(1234);

    private SyntheticCheckpoint(string prefix, JsonObject config)
    {
        Prefix = prefix;
        Config = config;
    }

    public string Prefix { get; }
    public JsonObject Config { get; }
    public List<(TensorSpec Spec, byte[] Data)> Tensors { get; } = [];

    /// <summary>Config's "quantization" section (mirrored into "quantization_config" when written), or null.</summary>
    public JsonObject? Quantization => Config["quantization"] as JsonObject;

    public static SyntheticCheckpoint Create(bool quantized = true, string prefix = "language_model.model.", string modelType = "gemma4")
    {
        var text = new JsonObject
        {
            ["model_type"] = "gemma4_text",
            ["hidden_size"] = Hidden,
            ["num_hidden_layers"] = Layers,
            ["intermediate_size"] = Intermediate,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = HeadDim,
            ["num_global_key_value_heads"] = 1,
            ["global_head_dim"] = GlobalHeadDim,
            ["attention_k_eq_v"] = true,
            ["layer_types"] = new JsonArray("sliding_attention", "full_attention"),
            ["sliding_window"] = 16,
            ["rope_parameters"] = new JsonObject
            {
                ["sliding_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 10000.0 },
                ["full_attention"] = new JsonObject { ["rope_type"] = "proportional", ["rope_theta"] = 1000000.0, ["partial_rotary_factor"] = 0.25 },
            },
            ["final_logit_softcapping"] = 30.0,
            ["rms_norm_eps"] = 1e-6,
            ["vocab_size"] = Vocab,
            ["max_position_embeddings"] = 4096,
            ["tie_word_embeddings"] = true,
        };
        JsonObject root;
        if (modelType == "gemma4")
        {
            root = new JsonObject
            {
                ["model_type"] = "gemma4",
                ["text_config"] = text,
                ["vision_config"] = null,
                ["eos_token_id"] = new JsonArray(1, 106),
                ["bos_token_id"] = 2,
            };
        }
        else
        {
            root = text;
            root["model_type"] = modelType;
        }
        var model = new SyntheticCheckpoint(prefix, root);
        if (quantized)
        {
            var quantization = new JsonObject { ["group_size"] = 64, ["bits"] = 2, ["mode"] = "affine" };
            quantization[prefix + "embed_tokens"] = Override(4);
            for (int i = 0; i < Layers; i++)
            {
                foreach (var proj in i == 1 ? new[] { "q_proj", "k_proj" } : ["q_proj", "k_proj", "v_proj"])
                    quantization[$"{prefix}layers.{i}.self_attn.{proj}"] = Override(4);
                quantization[$"{prefix}layers.{i}.mlp.down_proj"] = Override(3);
            }
            root["quantization"] = quantization;
        }
        model.AddAllTensors(quantized);
        return model;
    }

    public static JsonObject Override(int bits, int groupSize = 64) =>
        new() { ["group_size"] = groupSize, ["bits"] = bits, ["mode"] = "affine" };

    public void WriteTo(string directory)
    {
        if (Quantization is { } quantization)
            Config["quantization_config"] = quantization.DeepClone();
        File.WriteAllText(Path.Combine(directory, "config.json"), Config.ToJsonString());
        SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), Tensors, new Dictionary<string, string> { ["format"] = "mlx" });
    }

    public TensorSpec Spec(string name) => Tensors.Single(t => t.Spec.Name == name).Spec;

    public void Remove(string name)
    {
        int removed = Tensors.RemoveAll(t => t.Spec.Name == name);
        if (removed != 1)
            throw new ArgumentException($"no tensor {name}");
    }

    /// <summary>Replaces tensor <paramref name="name"/> with random data of a new dtype and shape.</summary>
    public void Replace(string name, TensorDType dtype, params long[] shape)
    {
        int index = Tensors.FindIndex(t => t.Spec.Name == name);
        if (index < 0)
            throw new ArgumentException($"no tensor {name}");
        Tensors[index] = Make(new TensorSpec(name, dtype, shape));
    }

    public void Add(string name, TensorDType dtype, params long[] shape) => Tensors.Add(Make(new TensorSpec(name, dtype, shape)));

    private (TensorSpec, byte[]) Make(TensorSpec spec)
    {
        var data = new byte[spec.ByteLength];
        _random.NextBytes(data);
        if (spec.DType == TensorDType.BF16)
        {
            // Keep float payloads finite: exponent bits of every bf16 below 0x7F.
            for (int i = 1; i < data.Length; i += 2)
                data[i] &= 0x3F;
        }
        return (spec, data);
    }

    private void AddLinear(string module, int rows, int cols, int? bits)
    {
        if (bits is { } b)
        {
            Add(module + ".weight", TensorDType.U32, rows, cols * b / 32);
            Add(module + ".scales", TensorDType.BF16, rows, cols / 64);
            Add(module + ".biases", TensorDType.BF16, rows, cols / 64);
        }
        else
        {
            Add(module + ".weight", TensorDType.BF16, rows, cols);
        }
    }

    private void AddAllTensors(bool quantized)
    {
        int? Bits(int b) => quantized ? b : null;
        AddLinear(Prefix + "embed_tokens", Vocab, Hidden, Bits(4));
        for (int i = 0; i < Layers; i++)
        {
            string layer = $"{Prefix}layers.{i}.";
            bool full = i == 1;
            int headDim = full ? GlobalHeadDim : HeadDim, kvHeads = full ? 1 : KvHeads;
            Add(layer + "input_layernorm.weight", TensorDType.BF16, Hidden);
            Add(layer + "layer_scalar", TensorDType.BF16, 1);
            AddLinear(layer + "self_attn.q_proj", Heads * headDim, Hidden, Bits(4));
            AddLinear(layer + "self_attn.k_proj", kvHeads * headDim, Hidden, Bits(4));
            if (!full)
                AddLinear(layer + "self_attn.v_proj", kvHeads * headDim, Hidden, Bits(4));
            AddLinear(layer + "self_attn.o_proj", Hidden, Heads * headDim, null);
            Add(layer + "self_attn.q_norm.weight", TensorDType.BF16, headDim);
            Add(layer + "self_attn.k_norm.weight", TensorDType.BF16, headDim);
            Add(layer + "post_attention_layernorm.weight", TensorDType.BF16, Hidden);
            Add(layer + "pre_feedforward_layernorm.weight", TensorDType.BF16, Hidden);
            Add(layer + "post_feedforward_layernorm.weight", TensorDType.BF16, Hidden);
            AddLinear(layer + "mlp.gate_proj", Intermediate, Hidden, Bits(2));
            AddLinear(layer + "mlp.up_proj", Intermediate, Hidden, Bits(2));
            AddLinear(layer + "mlp.down_proj", Hidden, Intermediate, Bits(3));
        }
        Add(Prefix + "norm.weight", TensorDType.BF16, Hidden);
    }
}
