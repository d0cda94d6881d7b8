"""The engine behind chapter 5's command lines (``train``, ``prepare``, ``ladder``, ``generate``, ``explore``),
beyond the book.

The book's own modules stay one level up (``loss``, ``book_loop``, ``sampling``, ``checkpoint``,
``gpt2_weights``); what a reader of the book does not need to follow the chapter lives here:

- ``trainer``: the training engine (the book's loop, resumable, with accumulation, clipping, schedules,
  evaluation and per-phase timing).
- ``task``: what the trainer trains for (a language model by default; chapter 6's classifier passes its own).
- ``resume``: what ``--resume`` keeps, what it lets change, and the optimizer, RNG and progress it puts back.
- ``runtime``: where training runs (bf16, threads, glibc's heap, joining a torchrun job).
- ``sharding``: FSDP, parameters, gradients and AdamW state split over processes.
- ``token_data``: token files streamed through ``numpy.memmap``.
- ``model_source``: a model to run, from a checkpoint, a state dict, GPT-2's weights or a Hugging Face folder,
  with its tokenizer.
"""
