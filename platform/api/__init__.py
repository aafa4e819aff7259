"""The platform API for banks and government departments (public host, ``/api/v1/``):
integration clients and their keys (:mod:`.services`), HMAC-signed request authentication
(:mod:`.auth`), the one error format (:mod:`.errors`), per-client throttling
(:mod:`.throttling`) and the OpenAPI docs (:mod:`.views`). The county endpoints themselves are
in :mod:`loans.api`."""
