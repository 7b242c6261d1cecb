"""Fine-tuning a pre-trained encoder (BERT, RoBERTa or DistilBERT: a Hugging Face directory or one of our training
workdirs) with a sequence-classification head on a GLUE task or a table, as the BERT paper fine-tunes (Devlin et al.
2018, section 4.1, and its run_classifier.py): AdamW with weight decay 0.01 (not on LayerNorm or biases), eps 1e-6,
peak learning rate 2e-5 (of the paper's {5e-5, 3e-5, 2e-5}), 10% linear warmup then linear decay to 0, batch 32,
3 epochs, sequences of at most 128 tokens, dropout 0.1 (the model's own). Evaluation on the dev split(s) and a
checkpoint at the end of every epoch; the best parameters by the task's metric are exported to WORKDIR/best, the
last ones to WORKDIR/export.

    python -m bert_jax.finetune --model SOURCE --task TASK --data PATH --workdir DIR [--config.FIELD=VALUE ...]

The encoder's architecture, its tokenizer and the head's size come from SOURCE and the task (`bert_jax.finetune`
fills model.*, data.vocab_file, train_steps, eval_every and the warmup from them).

Variants (comma-separated after the path):
  tiny   batch 8, 64 tokens, 1 epoch: a quick check on a CPU
  squad  SQuAD: learning rate 5e-5, batch 32, 2 epochs, 384 tokens, doc_stride 128 (with tiny: 16, and
         questions of at most 16 tokens)
"""

import ml_collections

from bert_jax.configuration import parse_variants

VARIANTS = ("tiny", "squad")


def get_config(arg=None):
    variants = parse_variants(arg, VARIANTS)
    config = ml_collections.ConfigDict()
    config.objective = "classification"  # sequence classification or regression (objectives/classification.py)

    config.finetune = finetune = ml_collections.ConfigDict()
    finetune.model = ""  # the pre-trained source: an HF directory or a training workdir (--model)
    finetune.init = "pretrained"  # "random": the source's architecture and tokenizer with fresh weights (a baseline)
    finetune.task = ""  # a GLUE task (cola, sst2, ..., wnli), "table", "squad", "squad_v2", "conll" or "swag" (--task)
    finetune.data = ""  # the task's folder: glue_data/<TASK>, train/dev tables, SQuAD, CoNLL or SWAG files (--data)
    finetune.epochs = 3.0  # passes over the train split (an epoch is ceil(N / batch_size) steps)
    finetune.warmup_fraction = 0.1  # share of all steps warming the learning rate up from 0
    finetune.length_bucket = 16  # cut each batch to its longest example rounded up to this many tokens (0: never)
    finetune.group_by_length = False  # batch examples of similar length (transformers' group_by_length): less padding
    finetune.text_a = ""  # table task: the column of the (first) text; swag: the context's ("" = sent1)
    finetune.text_b = ""  # table task: the column of the second text of a pair ("" = single texts); swag: sent2's
    finetune.label_column = ""  # table task: the label's column; swag: the right choice's index ("" = label)
    finetune.labels = []  # table task and conll: label names in id order ([] = the sorted distinct train labels)
    finetune.problem_type = "single_label_classification"  # table task: or "regression", "multi_label_classification"
    finetune.doc_stride = 128  # QA: context tokens a window shares with the one before (transformers' stride)
    finetune.max_query_length = 64  # QA: question tokens kept (the rest cut)
    finetune.max_answer_length = 30  # QA: the longest answer span predicted, in tokens
    finetune.n_best_size = 20  # QA: start and end candidates per window when choosing the answer span
    finetune.null_score_diff_threshold = 0.0  # SQuAD v2.0: answer "" when null score - best span score exceeds this
    finetune.tag_column = -1  # conll: the tag's column in CoNLL text files (0 is the token; -1 = the last)
    finetune.label_all_tokens = False  # conll: label every sub-token of a word (B-X as I-X), not only its first
    finetune.choice_columns = []  # swag: the choices' columns in order ([] = the header's ending0, ending1, ...)

    config.model = model = ml_collections.ConfigDict()  # the architecture comes from finetune.model
    model.dtype = "float32"  # compute dtype: "bfloat16" on TPU/GPU for speed
    model.param_dtype = "float32"  # parameter and optimizer-state storage
    model.scan_layers = False  # encoder as a lax.scan over layers
    model.dropout_impl = "auto"  # "stock" (nnx.Dropout), "threefry16" (faster on CPU), "auto": threefry16 on CPU only
    model.decoder_impl = "auto"  # unused by classification heads; kept for the shared model config

    config.data = data = ml_collections.ConfigDict()
    data.vocab_file = ""  # the source's vocab.txt or tokenizer.json (set from finetune.model)
    data.lowercase = False  # WordPiece casing (set from the source's tokenizer_config.json)
    data.worker_count = 0  # the task examples are in memory: no loader processes

    config.batch_size = 32  # global batch (examples per step over all hosts)
    config.train_steps = 1  # set from finetune.epochs and the train split's size
    config.phases = [  # one length; max_predictions is unused by classification
        ml_collections.ConfigDict(dict(max_seq_length=128, fraction=1.0, max_predictions=1)),
    ]

    config.optimizer = opt = ml_collections.ConfigDict()
    opt.name = "adamw"  # Adam with decoupled weight decay, as the original
    opt.learning_rate = 2e-5  # peak learning rate
    opt.b1 = 0.9  # Adam beta1
    opt.b2 = 0.999  # Adam beta2
    opt.eps = 1e-6  # Adam epsilon, as the original
    opt.weight_decay = 0.01  # decoupled weight decay, not applied to LayerNorm and biases
    opt.warmup_steps = 0  # set from finetune.warmup_fraction
    opt.end_learning_rate = 0.0  # linear decay reaches this at the last step
    opt.grad_clip_norm = 1.0  # global-norm gradient clipping, as the original
    opt.grad_accum_steps = 1  # micro-batches per step

    config.mesh = mesh = ml_collections.ConfigDict()
    mesh.data = -1  # data-parallel replicas: every device
    mesh.fsdp = 1  # parameter/optimizer-state sharding ways
    mesh.tensor = 1  # tensor (heads / mlp) parallel ways
    mesh.rules = []  # (logical axis, mesh axis | [axes] | None) pairs replacing default sharding rules

    config.seed = 42  # head init, dropout and data order all derive from it
    config.log_every = 50  # steps between metric lines (at most one epoch)
    config.eval_every = 1  # set to one epoch's steps
    config.eval_steps = 0  # unused: evaluation reads whole dev splits
    config.checkpoint_every = 1  # set to one epoch's steps
    config.keep_checkpoints = 1  # most recent checkpoints kept (the best is exported to WORKDIR/best)
    config.max_nonfinite_steps = 10  # consecutive non-finite (skipped) steps that stop the run
    config.peak_flops_per_device = 0.0  # FLOP/s for MFU; 0 = measure a matmul at start
    config.profile_start_step = 10  # first step of the jax.profiler trace (when profile_steps > 0)
    config.profile_steps = 0  # steps traced into WORKDIR/profile; 0 = no trace
    config.export_at_end = True  # write WORKDIR/export (the last parameters) when training ends
    config.export_license = "apache-2.0"  # the export's model-card license (a Hub id): the data's terms may need another

    if "squad" in variants:  # SQuAD (BERT paper sections 4.2-4.3, its run_squad.py; docs/finetune.md)
        opt.learning_rate = 5e-5
        finetune.epochs = 2.0
        config.phases[0].max_seq_length = 384
    if "tiny" in variants:
        config.batch_size = 8
        config.phases[0].max_seq_length = 64
        finetune.epochs = 1.0
        config.log_every = 10
        if "squad" in variants:  # a question and a context window that fit in 64 tokens
            finetune.doc_stride = finetune.max_query_length = 16
    return config
