"""The reference for `python -m bert_jax.finetune`: the same fine-tuning with transformers' Trainer (PyTorch), on
the same GLUE folder (a sequence-classification task read with bert_jax's own task reader, so both sides see the
same examples and labels), the same hyper-parameters as configs/finetune.py — AdamW lr 2e-5, weight decay 0.01 off
biases and LayerNorm, eps 1e-6, 10% linear warmup then linear decay, batch 32, gradient clipping at 1, padding to
max_length as run_glue.py does by default — and an evaluation at every epoch. `--padding longest` (transformers'
DataCollatorWithPadding, to a multiple of 16) and `--group_by_length` are transformers' counterparts of
`finetune.length_bucket` and `finetune.group_by_length`, to compare speed at equal work. Prints one JSON line: dev
metrics per epoch and the training examples per second.

    python scripts/finetune_reference_hf.py --model DIR --task rte --data ../shared/glue/RTE [--epochs 3]
        [--max_seq_length 128] [--seed 42] [--threads 2] [--padding longest [--group_by_length]]

Needs the test extra and `accelerate` (Trainer's dependency): pip install -c constraints.txt ".[test,reference]".
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import transformers

from bert_jax.data import tasks
from bert_jax.data.tasks import metrics


class Encoded(torch.utils.data.Dataset):
    def __init__(self, tokenizer, examples, max_len, padding):
        firsts = [e.text_a for e in examples]
        seconds = [e.text_b for e in examples] if examples[0].text_b is not None else None
        # "longest": unpadded here, the collator pads each batch
        self.features = tokenizer(firsts, seconds, truncation=True, max_length=max_len,
                                  padding="max_length" if padding == "max_length" else False)
        self.labels = [e.label for e in examples]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        item = {name: torch.tensor(values[index]) for name, values in self.features.items()}
        item["labels"] = torch.tensor(self.labels[index])
        return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--padding", choices=("max_length", "longest"), default="max_length",
                        help="max_length: every example padded to --max_seq_length (run_glue.py's default); longest: "
                             "each batch padded to its longest example, rounded up to --pad_to_multiple_of")
    parser.add_argument("--pad_to_multiple_of", type=int, default=16, help="with --padding longest")
    parser.add_argument("--group_by_length", action="store_true",
                        help="TrainingArguments.train_sampling_strategy='group_by_length': batches of similar lengths")
    parser.add_argument("--output", default="/tmp/finetune_reference_hf")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = tasks.get(args.task).read(args.data)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    transformers.set_seed(args.seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=data.num_labels, problem_type=data.problem_type,
        id2label=dict(enumerate(data.labels)) or None, label2id={n: i for i, n in enumerate(data.labels)} or None)
    train = Encoded(tokenizer, data.train, args.max_seq_length, args.padding)
    dev = {name: Encoded(tokenizer, split, args.max_seq_length, args.padding) for name, split in data.dev.items()}
    collator = (transformers.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of)
                if args.padding == "longest" else transformers.default_data_collator)

    def compute(prediction):
        predicted = metrics.predicted(prediction.predictions, data.problem_type)
        return metrics.compute(data.metrics, predicted, prediction.label_ids, data.problem_type)

    training_args = transformers.TrainingArguments(
        output_dir=args.output, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        learning_rate=args.learning_rate, weight_decay=0.01, adam_epsilon=1e-6, max_grad_norm=1.0,
        num_train_epochs=args.epochs, warmup_steps=0.1, lr_scheduler_type="linear", eval_strategy="epoch",
        save_strategy="no", logging_strategy="epoch", report_to=[], seed=args.seed, use_cpu=True,
        dataloader_num_workers=0, train_sampling_strategy="group_by_length" if args.group_by_length else "random")
    trainer = transformers.Trainer(model=model, args=training_args, train_dataset=train,
                                   eval_dataset=dev[next(iter(dev))], compute_metrics=compute,
                                   data_collator=collator)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    evals = [{k: v for k, v in entry.items() if k.startswith("eval_") or k == "epoch"}
             for entry in trainer.state.log_history if "eval_loss" in entry]
    print(json.dumps({
        "task": data.name, "train_examples": len(train), "epochs": args.epochs, "seed": args.seed,
        "max_seq_length": args.max_seq_length, "padding": args.padding, "group_by_length": args.group_by_length,
        "evals": evals,
        "best": max(e[f"eval_{data.best_metric}"] for e in evals), "train_seconds": seconds,
        "train_examples_per_s": result.metrics["train_samples_per_second"],
        # Trainer's rate counts the evaluations inside train(); this one the training steps alone.
        "train_examples_per_s_without_eval": len(train) * args.epochs / (
            result.metrics["train_runtime"] - sum(e["eval_runtime"] for e in evals)),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__},
    }))


if __name__ == "__main__":
    main()
