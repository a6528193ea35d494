"""Training on finished data: BERT masked-language pretraining and classification fine-tuning.

``loop`` is plain PyTorch and runs anywhere; ``trainer`` runs the same loop on Ray Train workers fed
by Ray Data. Nothing here imports ``llmray.ops`` (training takes parquet or jsonl, never steps), and
nothing imports Ray at module level except ``trainer``.
"""
