"""The paper's names for what LSLo adapts: the projections of a layer (section 4.1, tables 9-10) and
the two indexes of a layer's adapters. Plain Python, the bottom floor: the option parsing
(:mod:`.config`), the run files (:mod:`.runfiles`) and the model share them."""

# Module names, as the paper writes them (section 4.1, tables 9-10).
ENCODER_MODULES = ("q", "k", "v", "fc1", "fc2")
DECODER_MODULES = ("q", "k", "v", "c-q", "c-k", "c-v", "fc1", "fc2")
ALL_MODULES = DECODER_MODULES
INDEX_CHOICES = ("src", "tgt")
