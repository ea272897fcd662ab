"""lslo-fairseq: Language-Specific LoRA for fairseq multilingual translation models.

fairseq itself is deliberately *not* a hard requirement here: users who built fairseq from source
keep their build. `pip install .[fairseq]` pulls the tested PyPI build (ve-fairseq 0.12.3).
"""
from setuptools import find_packages, setup

setup(
    name="lslo-fairseq",
    version="0.1.0",
    description="Language-Specific LoRA (LSLo) plugin for fairseq multilingual NMT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["lslo_fairseq", "lslo_fairseq.*"]),
    package_data={"lslo_fairseq": ["resources/*", "resources/**/*"]},
    install_requires=[
        "torch>=2.0",
        "sentencepiece",
        "sacrebleu>=2.0",
        "numpy",
        "scipy",
        "matplotlib",
    ],
    extras_require={
        "fairseq": ["ve-fairseq==0.12.3", "hydra-core==1.3.8", "omegaconf==2.3.1"],
        # the tests exercise lslo-score --merge-search bayes too
        "test": ["pytest", "bayesian-optimization>=3.4,<4"],
        # lslo-export hf/peft/ct2 (Hugging Face M2M100 + PEFT adapters, CTranslate2)
        "hf": ["transformers>=5,<6", "peft>=0.21", "ctranslate2>=4.5", "safetensors"],
        # lslo-score --merge-search bayes (Gaussian-process Bayesian optimisation of the merge ratio)
        "search": ["bayesian-optimization>=3.4,<4"],
    },
    entry_points={
        "console_scripts": [
            "lslo-params=lslo_fairseq.cli.params:main",
            "lslo-score=lslo_fairseq.cli.score:main",
            "lslo-demo=lslo_fairseq.cli.demo:main",
            "lslo-plot=lslo_fairseq.cli.plot:main",
            "lslo-export=lslo_fairseq.cli.export:main",
            "lslo-prepare-flores=lslo_fairseq.cli.prepare_flores:main",
        ]
    },
)
