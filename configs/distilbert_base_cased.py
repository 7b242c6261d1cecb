"""DistilBERT-base, cased: a 6-layer student distilled from a BERT teacher (Sanh et al. 2019; Hugging Face's
distillation project, `distiller.py` and `train.py`), with three losses: the teacher's soft targets at temperature 2
(weight 5), masked LM (2) and the cosine between last hidden states (1). The student starts from every other teacher
layer with its embeddings and MLM head (`extract_distilbert.py`); no token types, no pooler, no NSP. Adam lr 5e-4,
betas (0.9, 0.98), eps 1e-6, no weight decay, 5% warmup then linear decay, gradient clipping at 5, about 4K
sequences per update. Masking is frequency-smoothed (`mlm_smoothing` 0.7): rarer tokens are masked more often.

    python -m bert_jax.distill --config configs/distilbert_base_cased.py --teacher HF_DIR_OR_WORKDIR --workdir DIR

Fields the recipe does not change (logging, checkpoints, seed) come from `base_cased.py`.

Variants (comma-separated after the path):
  tiny   a 2-layer student of a 4-layer teacher on the bundled sample corpus; `bert_jax.distill` first trains the
         teacher (configs/base_cased.py:tiny with 4 layers) into runs/distil_tiny_teacher, or finds it trained
"""

import ml_collections

from bert_jax.bundled import sample_path
from bert_jax.configuration import load_sibling, parse_variants

base_cased = load_sibling(__file__, "base_cased")
VARIANTS = ("tiny",)


def get_config(arg=None):
    variants = parse_variants(arg, VARIANTS)
    config = base_cased.get_config(arg)
    config.objective = "distillation"  # the student against a frozen teacher (objectives/distillation.py)

    config.model = model = ml_collections.ConfigDict()
    model.model_type = "distilbert"  # the student's architecture (Hugging Face's model_type)
    model.vocab_size = 28996  # the teacher's vocabulary (bert-base-cased's)
    model.max_position_embeddings = 512  # learned positions, as the teacher's
    model.sinusoidal_pos_embds = False  # learned, not sinusoidal, position embeddings
    model.n_layers = 6  # half the teacher's 12
    model.n_heads = 12  # heads per attention layer
    model.dim = 768  # the teacher's width, so its layers can be copied
    model.hidden_dim = 3072  # feed-forward inner width
    model.dropout = 0.1  # dropout on embeddings and every residual branch
    model.attention_dropout = 0.1  # dropout on attention probabilities
    model.activation = "gelu"  # exact (erf) GELU
    model.initializer_range = 0.02  # std of the truncated-normal initialiser (student_init="random")
    model.pad_token_id = 0  # [PAD]
    model.dtype = "bfloat16"  # compute dtype on TPU/GPU (matmuls in bf16, float32 accumulation); tiny: float32
    model.param_dtype = "float32"  # parameter and optimizer-state storage (master weights)
    model.scan_layers = False  # encoder as a lax.scan over layers
    model.dropout_impl = "auto"  # "stock" (nnx.Dropout), "threefry16" (faster on CPU), "auto": threefry16 on CPU only
    model.decoder_impl = "auto"  # MLM decoder gradient: "stock", "matmul_bias_grad" (faster on CPU), "auto"

    config.distillation = distill = ml_collections.ConfigDict()
    distill.teacher = ""  # the teacher: an HF directory with an MLM head, or a training --workdir (--teacher)
    distill.teacher_dtype = "float32"  # "bfloat16" stores and runs the frozen teacher in half the memory
    distill.temperature = 2.0  # softmax temperature of the soft targets
    distill.alpha_ce = 5.0  # weight of the soft-target (KL) loss
    distill.alpha_mlm = 2.0  # weight of the masked-LM loss
    distill.alpha_cos = 1.0  # weight of the cosine loss between last hidden states
    distill.alpha_mse = 0.0  # weight of the optional MSE between logits
    distill.kd_all_positions = False  # soft targets at every real token instead of the masked ones only
    distill.student_init = "teacher"  # "teacher": copy layers, embeddings and MLM head; "random": fresh weights
    distill.student_layers = []  # teacher layers to copy, one per student; [] = evenly spaced (12 -> 6: 0,2,4,7,9,11)
    distill.teacher_train = ""  # config[:variants] to train the teacher with first when `teacher` holds no run
    distill.teacher_train_overrides = []  # FIELD=VALUE overrides of that teacher config

    data = config.data
    data.example_kind = "full_sentences"  # contiguous text without NSP labels: distillation reads masked LM only
    data.dir = "data/built/distil_cased"  # built with the teacher's vocab (--example_kind full_sentences)
    data.mlm_smoothing = 0.7  # mask tokens with probability ~ count^-0.7: rare tokens more often (0 = uniform)

    config.batch_size = 4096  # ~4K sequences per update: mesh.data x per-device batch x grad_accum_steps (16 x 64 x 4)
    config.train_steps = 10_000  # about 3 epochs of BookCorpus + Wikipedia (~3.3B tokens) at 4K x 512 tokens a step
    config.phases = [  # one length: contiguous text fills it
        ml_collections.ConfigDict(dict(max_seq_length=512, fraction=1.0, max_predictions=80)),
    ]
    opt = config.optimizer
    opt.learning_rate = 5e-4  # peak learning rate
    opt.b2 = 0.98  # Adam beta2
    opt.weight_decay = 0.0  # no weight decay
    opt.warmup_steps = 500  # 5% of train_steps
    opt.grad_clip_norm = 5.0  # global-norm clipping, as distiller.py's max_grad_norm
    opt.grad_accum_steps = 4  # micro-batches per update

    if "tiny" in variants:
        model.vocab_size = 4096  # the sample corpus vocab (data/sample/vocab)
        model.n_layers = 2
        model.n_heads = 2
        model.dim = 128
        model.hidden_dim = 512
        model.dtype = "float32"  # the CPU demo: bf16 matmuls are emulated (slow) on CPUs
        data.dir = "data/built/sample_packed"
        data.build_from = sample_path("corpus-*.txt")  # the bundled sample corpus, built on first use
        distill.teacher = "runs/distil_tiny_teacher"
        distill.teacher_train = "base_cased:tiny"  # the bundled config: a 4-layer BERT on the same corpus and vocab
        distill.teacher_train_overrides = ["model.num_hidden_layers=4"]
        config.batch_size = 32
        config.train_steps = 1000
        config.phases = [ml_collections.ConfigDict(dict(max_seq_length=128, fraction=1.0, max_predictions=20))]
        opt.learning_rate = 1e-3
        opt.warmup_steps = 50
        opt.grad_accum_steps = 1
    return config
