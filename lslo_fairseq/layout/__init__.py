"""The checkpoint layout, the bottom floor of the package (torch only, no fairseq): what an LSLo
state dict holds and how it is read.

- :mod:`.record`: the adapter layout record (``lslo_layout``): its key, fields, encoding, differences;
- :mod:`.keys`: which state-dict keys are LSLo's;
- :mod:`.languages`: each language's block of the adapter tensors, and languages added to a layout;
- :mod:`.loading`: safe ``torch.load`` of checkpoint files and the cheap integrity check;
- :mod:`.frozen_base`: adapter-only checkpoints and the frozen base they refer to;
- :mod:`.json_buffer`: a JSON record in a uint8 tensor of a state dict (the layout, the base reference).
"""
