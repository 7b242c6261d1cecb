"""BERT-base, cased: the original pre-training recipe (Devlin et al. 2018), field by field.

Variants (comma-separated after the path or name, e.g. `configs/base_cased.py:tiny,uncased` or `base_cased:tiny`):
  uncased  lowercased text and the uncased vocabulary size (30522)
  small    4 layers, hidden 256, 4 heads: benchmarks and CPU experiments
  tiny     2 layers, hidden 128, trained in minutes on a laptop CPU on the bundled sample corpus
"""

import ml_collections

from bert_jax.bundled import sample_path
from bert_jax.configuration import parse_variants

VARIANTS = ("uncased", "small", "tiny")


def get_config(arg=None):
    variants = parse_variants(arg, VARIANTS)
    uncased = "uncased" in variants
    config = ml_collections.ConfigDict()

    config.objective = "mlm_nsp"  # "mlm_nsp" (masked LM + next sentence, the original) or "mlm" (masked LM alone)
    config.init_from = ""  # continue from a trained model: hf:DIR, hf:ORG/NAME (HF cache), a workdir; "" = scratch

    config.model = model = ml_collections.ConfigDict()
    model.model_type = "bert"  # the architecture (Hugging Face's model_type)
    model.vocab_size = 30522 if uncased else 28996  # WordPiece vocab size (the original's uncased/cased vocabs)
    model.hidden_size = 768  # width of every layer
    model.num_hidden_layers = 12  # encoder layers
    model.num_attention_heads = 12  # heads per attention layer (64-dim heads)
    model.intermediate_size = 3072  # feed-forward inner width
    model.hidden_act = "gelu"  # exact (erf) GELU, as the original
    model.hidden_dropout_prob = 0.1  # dropout on embeddings and every residual branch
    model.attention_probs_dropout_prob = 0.1  # dropout on attention probabilities (0 enables the fused kernel)
    model.max_position_embeddings = 512  # longest sequence the position table covers
    model.type_vocab_size = 2  # segment ids: sentence A and B
    model.initializer_range = 0.02  # std of the truncated-normal initialiser
    model.layer_norm_eps = 1e-12  # LayerNorm epsilon, as the original
    model.dtype = "bfloat16"  # compute dtype on TPU/GPU (matmuls in bf16, float32 accumulation); CPU variants: float32
    model.param_dtype = "float32"  # parameter and optimizer-state storage (master weights)
    model.scan_layers = False  # encoder as a lax.scan over layers: faster compiles of deep models (docs/bench_train_step.md)
    model.dropout_impl = "auto"  # "stock" (nnx.Dropout), "threefry16" (faster on CPU), "auto": threefry16 on CPU only
    model.decoder_impl = "auto"  # MLM decoder gradient: "stock" (autodiff), "matmul_bias_grad" (faster on CPU), "auto"

    config.data = data = ml_collections.ConfigDict()
    data.dir = "data/built/base_cased"  # built dataset (python -m bert_jax.data.build --output)
    data.vocab_file = "data/vocab/cased/vocab.txt"  # WordPiece vocab the data was built with
    data.example_kind = "nsp_pairs"  # sentence pairs with next-sentence labels, as the original
    data.lowercase = uncased  # lowercase and strip accents before WordPiece
    data.masked_lm_prob = 0.15  # share of maskable tokens to predict
    data.whole_word_masking = False  # mask all pieces of a word together
    data.static_masking = False  # True fixes each example's mask across epochs, as the original's offline masking
    data.worker_count = 2  # grain worker processes per host for masking and batching
    data.build_from = ""  # corpus glob to build data.dir from when it is missing ("" = it must exist)
    data.build_eval_fraction = 0.01  # share of documents held out for eval when building from data.build_from

    config.batch_size = 256  # global batch (sequences per step over all hosts)
    config.train_steps = 1_000_000  # total optimizer steps over all phases
    # Sequence length 128 for 90% of steps, then 512 to learn the long position embeddings.
    config.phases = [
        ml_collections.ConfigDict(dict(max_seq_length=128, fraction=0.9, max_predictions=20)),
        ml_collections.ConfigDict(dict(max_seq_length=512, fraction=0.1, max_predictions=80)),
    ]

    config.optimizer = opt = ml_collections.ConfigDict()
    opt.name = "adamw"  # "adamw" (the original's Adam with decoupled weight decay) or "lamb" for large batches
    opt.learning_rate = 1e-4  # peak learning rate
    opt.b1 = 0.9  # Adam beta1
    opt.b2 = 0.999  # Adam beta2
    opt.eps = 1e-6  # Adam epsilon, as the original
    opt.weight_decay = 0.01  # decoupled weight decay, not applied to LayerNorm and biases
    opt.warmup_steps = 10_000  # linear warmup from 0 to the peak
    opt.end_learning_rate = 0.0  # linear decay reaches this at train_steps
    opt.grad_clip_norm = 1.0  # global-norm gradient clipping
    opt.grad_accum_steps = 1  # micro-batches per step when the global batch does not fit

    config.mesh = mesh = ml_collections.ConfigDict()
    mesh.data = -1  # data-parallel replicas: -1 = every device the other axes leave (16 chips: a v4-32 or v5litepod-16)
    mesh.fsdp = 1  # parameter/optimizer-state sharding ways
    mesh.tensor = 1  # tensor (heads / mlp) parallel ways
    mesh.rules = []  # (logical axis, mesh axis | [axes] | None) pairs replacing default sharding rules, e.g. [('vocab', None)]

    config.seed = 12345  # model init, dropout and data order all derive from it
    config.log_every = 100  # steps between metric lines
    config.eval_every = 10_000  # steps between held-out evaluations
    config.eval_steps = 100  # batches per evaluation
    config.checkpoint_every = 10_000  # steps between checkpoints
    config.keep_checkpoints = 3  # most recent checkpoints kept
    config.max_nonfinite_steps = 10  # consecutive non-finite (skipped) steps that stop the run
    config.peak_flops_per_device = 0.0  # FLOP/s for MFU (e.g. 197e12 for v5e bf16); 0 = measure a matmul at start
    config.profile_start_step = 10  # first step of the jax.profiler trace (when profile_steps > 0)
    config.profile_steps = 0  # steps traced into WORKDIR/profile for TensorBoard; 0 = no trace
    config.export_at_end = True  # write WORKDIR/export (Hugging Face safetensors directory) when training ends
    config.export_license = "apache-2.0"  # the export's model-card license (a Hub id): the data's terms may need another

    if uncased:
        data.dir = "data/built/base_uncased"
        data.vocab_file = "data/vocab/uncased/vocab.txt"

    if "small" in variants:
        model.hidden_size = 256
        model.num_hidden_layers = 4
        model.num_attention_heads = 4
        model.intermediate_size = 1024
        config.batch_size = 32
        config.train_steps = 10_000
        opt.warmup_steps = 500
        config.log_every = 20
        config.eval_every = 1000
        config.eval_steps = 20
        config.checkpoint_every = 1000
        model.dtype = "float32"  # CPU experiments: bf16 matmuls are emulated (slow) on CPUs

    if "tiny" in variants:
        model.vocab_size = 4096  # the sample corpus vocab (data/sample/vocab; bert_jax.sample_data when installed)
        model.hidden_size = 128
        model.num_hidden_layers = 2
        model.num_attention_heads = 2
        model.intermediate_size = 512
        model.max_position_embeddings = 512
        model.hidden_dropout_prob = 0.0  # a 2-layer model on a 1 MB corpus learns context in minutes only without it
        model.attention_probs_dropout_prob = 0.0  # (docs/training.md: the demo's recipe)
        model.dtype = "float32"  # the laptop demo: bf16 matmuls are emulated (slow) on CPUs
        data.dir = "data/built/sample"
        data.vocab_file = sample_path("vocab/vocab.txt")  # the package data's (data/sample/ in a checkout)
        data.lowercase = False
        data.build_from = sample_path("corpus-*.txt")  # the bundled sample corpus, built on first use
        data.build_eval_fraction = 0.05  # ~40 of 818 documents: every eval shard has several to draw random-next from
        config.batch_size = 32
        config.train_steps = 3000  # ~30 passes over the corpus's masked tokens: past the unigram plateau
        # Short sequences keep the demo to minutes on 2 CPU cores; both phases still run.
        config.phases = [
            ml_collections.ConfigDict(dict(max_seq_length=64, fraction=0.9, max_predictions=10)),
            ml_collections.ConfigDict(dict(max_seq_length=128, fraction=0.1, max_predictions=20)),
        ]
        opt.learning_rate = 2e-3
        opt.warmup_steps = 200
        config.log_every = 100
        config.eval_every = 1000
        config.eval_steps = 10
        config.checkpoint_every = 1000

    return config
