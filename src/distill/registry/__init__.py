"""Pull from and push to container registries (the OCI distribution API), daemonless.

``reference``  parse ``docker://HOST[:PORT]/REPO[:TAG][@sha256:…]``
``auth``       credentials (explicit, environment, auth files) and Basic/Bearer auth
``session``    :class:`RegistrySession`: scheme detection, authenticated and retried
               requests (internal; the HTTP pieces are :mod:`distill.net.http`'s)
``client``     :class:`RegistryClient`: manifests and blobs, verified
``blobstream`` :class:`BlobStream`: a blob checked against its digest as it streams
``push``       :func:`push_image`: an image built by :mod:`distill.image` to a registry
"""
