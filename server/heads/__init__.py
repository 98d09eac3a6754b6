"""Classification heads: label fields decided from the language model's hidden states combined with a
bag-of-n-grams text model, instead of (or before) the model's label tokens.

`text` holds the text features shared with the classical baseline; `head` the stored head an adapter
may carry (fitted by the fine-tuning job, `finetune.heads`)."""
