"""AutoSAM2: a learned prompt encoder that lets frozen SAM2 segment without clicks (issue 13).

* :mod:`.prompt_net`: the network, SAM2's decoder run on its embeddings, save / load with a
  check of the SAM2 weights it was trained against;
* :mod:`.training`: training against a frozen SAM2 (a generator);
* :mod:`.infer`: one slice, a whole stack per frame, or first frame + SAM2 propagation;
* :mod:`.command`: ``sam2med auto``.
"""
