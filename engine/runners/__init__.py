"""ModelRunners: everything the engine asks of a model, behind one protocol (base.py), for each engine.

    base.py          the ModelRunner and RowBatch protocols, capabilities, refusals that name the engine
    transformers.py  a Hugging Face model in this process (hf_caches.py copies any cache to the rows)
    llamacpp.py      a GGUF file on llama.cpp in this process (llama-cpp-python's low-level API)
"""
