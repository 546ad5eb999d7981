"""The fake Kubernetes API server's parts; import the public face from ``tests.kube.fakeapi``."""
