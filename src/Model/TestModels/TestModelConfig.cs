using System.Text.Json;
using System.Text.Json.Nodes;

namespace Pipeline.Model.TestModels;

/// <summary>config.json of a generated checkpoint, laid out like the tiny-a fixture (Gemma4ForConditionalGeneration).</summary>
public static class TestModelConfig
{
    public static string ToJson(TestModelPlan plan, ulong seed)
    {
        var p = plan.Preset;
        var layerTypes = new JsonArray();
        for (int i = 0; i < p.NumLayers; i++)
            layerTypes.Add(p.IsFullAttention(i) ? "full_attention" : "sliding_attention");

        var text = new JsonObject
        {
            ["model_type"] = "gemma4_text",
            ["architectures"] = new JsonArray("Gemma4ForCausalLM"),
            ["hidden_size"] = p.HiddenSize,
            ["num_hidden_layers"] = p.NumLayers,
            ["intermediate_size"] = p.IntermediateSize,
            ["num_attention_heads"] = p.NumHeads,
            ["num_key_value_heads"] = p.NumKvHeads,
            ["head_dim"] = p.HeadDim,
            ["num_global_key_value_heads"] = p.NumGlobalKvHeads,
            ["global_head_dim"] = p.GlobalHeadDim,
            ["attention_k_eq_v"] = true,
            ["layer_types"] = layerTypes,
            ["sliding_window"] = p.SlidingWindow,
            ["rope_parameters"] = new JsonObject
            {
                ["sliding_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 10000.0 },
                ["full_attention"] = new JsonObject
                {
                    ["rope_type"] = "proportional",
                    ["rope_theta"] = 1000000.0,
                    ["partial_rotary_factor"] = 0.25,
                },
            },
            ["final_logit_softcapping"] = 30.0,
            ["attn_logit_softcapping"] = null,
            ["rms_norm_eps"] = 1e-06,
            ["hidden_activation"] = "gelu_pytorch_tanh",
            ["vocab_size"] = p.VocabSize,
            ["vocab_size_per_layer_input"] = p.VocabSize,
            ["hidden_size_per_layer_input"] = 0,
            ["num_kv_shared_layers"] = 0,
            ["use_double_wide_mlp"] = false,
            ["enable_moe_block"] = false,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            // Gemma 4's larger models attend bidirectionally inside image blocks.
            ["use_bidirectional_attention"] = p.Vision is null ? null : "vision",
            ["max_position_embeddings"] = p.MaxPositionEmbeddings,
            ["initializer_range"] = 0.02,
            ["tie_word_embeddings"] = true,
            ["use_cache"] = true,
            ["pad_token_id"] = 0,
            ["bos_token_id"] = 2,
            ["eos_token_id"] = 1,
            ["dtype"] = "bfloat16",
        };

        var root = new JsonObject
        {
            ["architectures"] = new JsonArray("Gemma4ForConditionalGeneration"),
            ["model_type"] = "gemma4",
            ["text_config"] = text,
            ["vision_config"] = p.Vision is { } vision ? VisionConfig(vision) : null,
            ["audio_config"] = null,
            ["eos_token_id"] = new JsonArray(1, 106),
            ["bos_token_id"] = 2,
            ["pad_token_id"] = 0,
            ["tie_word_embeddings"] = true,
            ["dtype"] = "bfloat16",
            ["_pipeline_test_model"] =
                $"random weights from pipeline make-test-model --preset {p.Name}{p.LayersOption} --quant {TestModelQuants.Name(plan.Quant)} --seed {seed}",
        };
        if (p.Vision is not null)
        {
            root["image_token_id"] = 258880;
            root["boi_token_id"] = 255999;
            root["eoi_token_id"] = 258882;
        }
        if (plan.Quant == TestModelQuant.UdQ2Kxl)
        {
            root["quantization"] = Quantization(plan);
            root["quantization_config"] = Quantization(plan);
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static JsonObject VisionConfig(TestVisionPreset v) => new()
    {
        ["model_type"] = "gemma4_vision",
        ["hidden_size"] = v.HiddenSize,
        ["intermediate_size"] = v.IntermediateSize,
        ["num_hidden_layers"] = v.NumLayers,
        ["num_attention_heads"] = v.NumHeads,
        ["num_key_value_heads"] = v.NumHeads,
        ["head_dim"] = v.HeadDim,
        ["hidden_activation"] = "gelu_pytorch_tanh",
        ["rms_norm_eps"] = 1e-06,
        ["patch_size"] = TestVisionPreset.PatchSize,
        ["pooling_kernel_size"] = TestVisionPreset.PoolingKernel,
        ["position_embedding_size"] = v.PositionEmbeddingSize,
        ["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 100.0 },
        ["standardize"] = true,
        ["use_clipped_linears"] = false,
        ["attention_bias"] = false,
        ["attention_dropout"] = 0.0,
    };

    /// <summary>Top-level defaults plus sparse overrides for the modules whose bits differ from the default.</summary>
    private static JsonObject Quantization(TestModelPlan plan)
    {
        var q = Affine(TestModelPlan.DefaultBits);
        // Same order as mlx-node writes them: embed, then per layer q, k, v, down.
        string[] order = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"];
        var overridden = plan.Weights
            .Where(w => w.IsQuantized && w.Bits != TestModelPlan.DefaultBits)
            .OrderBy(w => w.Path == "embed_tokens.weight" ? -1 : LayerOf(w.Path))
            .ThenBy(w => Array.FindIndex(order, m => w.Module.EndsWith(m, StringComparison.Ordinal)));
        foreach (var w in overridden)
            q[plan.TensorPrefix + w.Module] = Affine(w.Bits);
        return q;
    }

    private static JsonObject Affine(int bits) => new()
    {
        ["group_size"] = TestModelPlan.GroupSize,
        ["bits"] = bits,
        ["mode"] = "affine",
    };

    private static int LayerOf(string path) => int.Parse(path.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture);
}
