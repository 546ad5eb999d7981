"""Authorization as kube-apiserver decides it: request attributes, the RBAC authorizer, 403s.

Off unless a test turns it on (:meth:`~tests.kube.fake.server.ApiServer.enforce_rbac`); then
every HTTP request is mapped to the attributes a real server authorizes (verb, namespace, API
group, resource, subresource, name) and checked against Roles, ClusterRoles and their bindings
loaded from manifests, the project's ``config/rbac`` first of all (:meth:`Rbac.from_config`).
The test's direct object API is the cluster admin and is never authorized.

Faithful to these Kubernetes sources (read for this module, quoted in the comments):

- ``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`` (``NewRequestInfo``):
  a GET without a name is ``list``, or ``watch`` when the ``watch`` parameter is set to
  anything but ``false``/``0``; a list, watch or delete-collection whose ``fieldSelector``
  requires ``metadata.name=<n>`` gets Name ``<n>``, so ``resourceNames`` rules apply to it; a
  DELETE without a name is ``deletecollection``; ``/api/v1/namespaces/<n>`` is namespace
  ``<n>``'s own resource; the deprecated ``/watch/`` path prefix sets the verb; any other path
  is a non-resource URL whose verb is the lowercase HTTP method.
- ``plugin/pkg/auth/authorizer/rbac/rbac.go`` (``RuleAllows``) with
  ``pkg/apis/rbac/v1/evaluation_helpers.go`` (``VerbMatches``, ``APIGroupMatches``,
  ``ResourceMatches`` with ``*``, ``resource/subresource`` and ``*/subresource``,
  ``ResourceNameMatches``, ``NonResourceURLMatches`` with trailing ``*``).
- ``pkg/registry/rbac/validation/rule.go`` (``VisitRulesFor``, ``appliesToUser``):
  ClusterRoleBindings apply everywhere, RoleBindings only in their namespace; a
  ServiceAccount subject without a namespace means the binding's namespace (never matches in
  a ClusterRoleBinding); a binding to a role that does not exist denies with the reason
  ``RBAC: clusterrole.rbac.authorization.k8s.io "x" not found``.
- ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go``
  (``Forbidden``, ``forbiddenMessage``) with ``apierrors.NewForbidden``: the 403 body.
- ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``: the default ClusterRoles
  every cluster has (``system:discovery`` and ``system:public-info-viewer`` grant the
  discovery URLs, ``system:basic-user`` the self reviews, ``cluster-admin`` to
  ``system:masters``), loaded unless ``bootstrap=False``.

Not modelled: authentication beyond a bearer-token map (without a token a request is the
configured user, by default the controller's ServiceAccount), ClusterRole aggregation,
impersonation, the Node and webhook authorizers, the selector-based authorization of 1.31+
(``AuthorizeWithSelectors``), escalation checks on RBAC writes, and the informer delay
between a binding change and the authorizer seeing it (changes apply at once; see the
warm-up of :meth:`~tests.kube.fake.server.ApiServer.restart` for the delay that matters).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.kube.fake.errors import ApiError
from tests.kube.fake.faults import RecordedRequest
from tests.kube.fake.selectors import parse_label_selector

RBAC_GROUP = "rbac.authorization.k8s.io"
CONFIG_RBAC = Path(__file__).resolve().parents[3] / "config" / "rbac"
"""The project's RBAC manifests (``kubectl apply -k config/rbac -n <namespace>``)."""

CONTROLLER_SERVICE_ACCOUNT = "mwm-controller"

ALWAYS_ALLOW_PATHS = ("/healthz", "/readyz", "/livez")
"""kube-apiserver's ``AlwaysAllowPaths``: authorized before RBAC, so even while it warms up."""
PRIVILEGED_GROUP = "system:masters"
"""``AlwaysAllowGroups``: the privileged group authorizer precedes RBAC too."""

_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_SPECIAL_VERBS = ("proxy", "watch")
_INTEGER = re.compile(r"[+-]?[0-9]+")


# -- users ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """Who a request is from: a user name and its groups, as an authenticator reports them."""

    name: str
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        """``system:serviceaccount:<ns>:<name>`` with the groups a token of it carries."""
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )

    @property
    def service_account_of(self) -> tuple[str, str] | None:
        """``(namespace, name)`` when this is a ServiceAccount's user, else None."""
        parts = self.name.split(":")
        if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
            return parts[2], parts[3]
        return None

    def subject(self) -> Subject:
        """The binding subject naming exactly this user (a ServiceAccount when it is one)."""
        account = self.service_account_of
        if account is not None:
            return Subject("ServiceAccount", account[1], account[0])
        return Subject("User", self.name)

    def authenticated(self) -> User:
        """With ``system:authenticated``, which kube-apiserver adds to every authenticated user."""
        if "system:authenticated" in self.groups or self.name == "system:anonymous":
            return self
        return dataclasses.replace(self, groups=(*self.groups, "system:authenticated"))


# -- request attributes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attributes:
    """What the authorizer sees of a request (``authorizer.Attributes``)."""

    user: User
    verb: str
    path: str
    is_resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        """``resource/subresource`` (just ``resource`` without one), as rules name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _go_bool(value: str) -> bool:
    """``Convert_Slice_string_To_bool``: only ``false`` (any case) and ``0`` are false."""
    return value.lower() not in ("false", "0")


def _unescape_field_value(value: str) -> str:
    """``fields.UnescapeValue``: ``\\\\``, ``\\,`` and ``\\=`` only; a bare ``,`` or ``=`` fails."""
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise ValueError(f"invalid field selector: unescaped {char!r}")
        else:
            out.append(char)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_field_terms(selector: str) -> list[str]:
    """``fields.splitTerms``: split on commas that are not escaped."""
    terms: list[str] = []
    start, escaped = 0, False
    for index, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return terms


def field_selector_exact_name(selector: str) -> str | None:
    """The value ``selector`` requires ``metadata.name`` to equal (``RequiresExactMatch``).

    Parsed like ``fields.ParseSelector``: terms sorted, ``!=``, ``==`` or ``=`` at the first
    position where one appears; raises ValueError when the selector does not parse.
    """
    required: str | None = None
    for term in sorted(_split_field_terms(selector)):
        if not term:
            continue
        for index in range(len(term)):
            operator = next((op for op in ("!=", "==", "=") if term.startswith(op, index)), None)
            if operator is not None:
                break
        else:
            raise ValueError(f"invalid selector: '{selector}'; can't understand '{term}'")
        key, value = term[:index], _unescape_field_value(term[index + len(operator) :])
        if key == "metadata.name" and operator != "!=" and required is None:
            required = value
    return required


def _list_options_parse(query: Mapping[str, str]) -> bool:
    """Whether the query decodes as ``ListOptions`` (a failure leaves the Name unset)."""
    try:
        if query.get("fieldSelector"):
            field_selector_exact_name(query["fieldSelector"])
        parse_label_selector(query.get("labelSelector"))
    except (ValueError, ApiError):
        return False
    return all(
        not query.get(key) or _INTEGER.fullmatch(query[key]) for key in ("limit", "timeoutSeconds")
    )


def _valid_path_segment_name(name: str) -> bool:
    """``path.IsValidPathSegmentName``."""
    return name not in (".", "..") and "/" not in name and "%" not in name


def request_attributes(method: str, path: str, query: Mapping[str, str], user: User) -> Attributes:
    """The attributes kube-apiserver's ``NewRequestInfo`` derives from a request.

    ``query`` gives the first value of each parameter (an aiohttp ``request.query`` does), as
    Go's ``url.Values`` decoding does.
    """
    verb = method.lower()
    parts = path.strip("/").split("/") if path.strip("/") else []  # Go's splitPath
    non_resource = Attributes(user, verb, path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    rest = parts[1:]
    group = ""
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    via_path_prefix = rest[0] in _SPECIAL_VERBS
    if via_path_prefix:
        if len(rest) < 2:
            return non_resource  # a real server fails to build the RequestInfo here
        verb, rest = rest[0], rest[1:]
    else:
        verb = {
            "POST": "create",
            "GET": "get",
            "HEAD": "get",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method.upper(), "")
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        watch = query.get("watch")
        verb = "watch" if watch is not None and _go_bool(watch) else "list"
        selector = query.get("fieldSelector")
        if selector and _list_options_parse(query):
            required = field_selector_exact_name(selector)
            if required is not None and _valid_path_segment_name(required):
                name = required
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        user,
        verb,
        path,
        is_resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


# -- policy --------------------------------------------------------------------------------------


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value or ())


@dataclass(frozen=True)
class PolicyRule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any]) -> PolicyRule:
        return cls(
            verbs=_strings(rule.get("verbs")),
            api_groups=_strings(rule.get("apiGroups")),
            resources=_strings(rule.get("resources")),
            resource_names=_strings(rule.get("resourceNames")),
            non_resource_urls=_strings(rule.get("nonResourceURLs")),
        )

    def verb_matches(self, verb: str) -> bool:
        return "*" in self.verbs or verb in self.verbs

    def api_group_matches(self, group: str) -> bool:
        return "*" in self.api_groups or group in self.api_groups

    def resource_matches(self, combined: str, subresource: str) -> bool:
        for resource in self.resources:
            if resource in ("*", combined):
                return True
            # ``*/status`` matches the status subresource of any resource.
            if subresource and resource == f"*/{subresource}":
                return True
        return False

    def resource_name_matches(self, name: str) -> bool:
        return not self.resource_names or name in self.resource_names

    def non_resource_url_matches(self, path: str) -> bool:
        for url in self.non_resource_urls:
            if url in ("*", path):
                return True
            if url.endswith("*") and path.startswith(url.rstrip("*")):
                return True
        return False

    def allows(self, attributes: Attributes) -> bool:
        """``RuleAllows``."""
        if attributes.is_resource_request:
            return (
                self.verb_matches(attributes.verb)
                and self.api_group_matches(attributes.api_group)
                and self.resource_matches(attributes.combined_resource, attributes.subresource)
                and self.resource_name_matches(attributes.name)
            )
        return self.verb_matches(attributes.verb) and self.non_resource_url_matches(attributes.path)


@dataclass(frozen=True)
class Subject:
    kind: str
    """``User``, ``Group`` or ``ServiceAccount``."""
    name: str
    namespace: str = ""

    @classmethod
    def from_dict(cls, subject: Mapping[str, Any]) -> Subject:
        return cls(
            str(subject.get("kind", "")),
            str(subject.get("name", "")),
            str(subject.get("namespace") or ""),
        )

    def to_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "name": self.name}
        if self.kind != "ServiceAccount":
            out["apiGroup"] = RBAC_GROUP
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def applies_to(self, user: User, binding_namespace: str) -> bool:
        """``appliesToUser``."""
        if self.kind == "User":
            return user.name == self.name
        if self.kind == "Group":
            return self.name in user.groups
        if self.kind == "ServiceAccount":
            namespace = self.namespace or binding_namespace
            return bool(namespace) and user.name == (
                f"system:serviceaccount:{namespace}:{self.name}"
            )
        return False

    def describe(self, binding_namespace: str) -> str:
        """``describeSubject``."""
        if self.kind == "ServiceAccount":
            return f'{self.kind} "{self.name}/{self.namespace or binding_namespace}"'
        return f'{self.kind} "{self.name}"'


@dataclass(frozen=True)
class Role:
    """A Role (``namespace`` set) or a ClusterRole."""

    kind: str
    name: str
    namespace: str
    rules: tuple[PolicyRule, ...]


@dataclass(frozen=True)
class Binding:
    """A RoleBinding (``namespace`` set) or a ClusterRoleBinding."""

    kind: str
    name: str
    namespace: str
    role_kind: str
    role_name: str
    subjects: tuple[Subject, ...]

    def describe(self, subject: Subject) -> str:
        """The ``clusterRoleBindingDescriber`` / ``roleBindingDescriber`` text."""
        if self.kind == "RoleBinding":
            return (
                f'RoleBinding "{self.name}/{self.namespace}" of {self.role_kind} '
                f'"{self.role_name}" to {subject.describe(self.namespace)}'
            )
        return (
            f'ClusterRoleBinding "{self.name}" of {self.role_kind} "{self.role_name}" to '
            f"{subject.describe('')}"
        )

    def to_dict(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": self.kind,
            "metadata": metadata,
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": self.role_kind, "name": self.role_name},
            "subjects": [subject.to_dict() for subject in self.subjects],
        }


@dataclass(frozen=True)
class Decision:
    """One authorization decision, as the fake logs it (:attr:`ApiServer.decisions`)."""

    attributes: Attributes
    allowed: bool
    reason: str = ""
    """On an allow, what allowed it (``RBAC: allowed by RoleBinding ...``); on a denial, what a
    real server appends to its message (empty, or ``RBAC: ... not found``)."""
    warming_up: bool = False
    """Denied because the authorizer was still warming up after a restart."""
    authenticated: bool = True
    """False: the bearer token was unknown, answered 401 Unauthorized."""
    request: RecordedRequest | None = None

    @property
    def user(self) -> User:
        return self.attributes.user

    @property
    def code(self) -> int:
        return 200 if self.allowed else 403 if self.authenticated else 401

    def status(self) -> dict[str, Any]:
        """The v1 ``Status`` a real server answers a denial with."""
        if not self.authenticated:
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }
        return forbidden_status(self.attributes, self.reason)


# -- the 403 -------------------------------------------------------------------------------------

_SANITIZE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable strings in Kubernetes names and paths."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def forbidden_message(attributes: Attributes) -> str:
    """``forbiddenMessage``: what the user cannot do, without the resource prefix."""
    user = _go_quote(attributes.user.name)
    verb = attributes.verb
    if not attributes.is_resource_request:
        return f"User {user} cannot {verb} path {_go_quote(attributes.path)}"
    resource = _go_quote(attributes.combined_resource)
    group = _go_quote(attributes.api_group)
    if attributes.namespace:
        namespace = _go_quote(attributes.namespace)
        return (
            f"User {user} cannot {verb} resource {resource} in API group {group} "
            f"in the namespace {namespace}"
        )
    return (
        f"User {user} cannot {verb} resource {resource} in API group {group} at the cluster scope"
    )


def forbidden_status(attributes: Attributes, reason: str = "") -> dict[str, Any]:
    """``responsewriters.Forbidden``: ``apierrors.NewForbidden`` of the message and reason."""
    error = forbidden_message(attributes).translate(_SANITIZE)
    if reason:
        error = f"{error}: {reason}"
    group, resource, name = attributes.api_group, attributes.resource, attributes.name
    qualified = f"{resource}.{group}" if group else resource
    if not group and not resource:
        message = f"forbidden: {error}"
    elif not name:
        message = f"{qualified} is forbidden: {error}"
    else:
        message = f"{qualified} {_go_quote(name)} is forbidden: {error}"
    details = {
        key: value for key, value in (("name", name), ("group", group), ("kind", resource)) if value
    }
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }


def _aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one message, or ``[a, b]`` without repeats."""
    unique = list(dict.fromkeys(errors))
    if len(errors) == 1 or len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# -- the authorizer ------------------------------------------------------------------------------


def _bootstrap_objects() -> list[dict[str, Any]]:
    """The default policy every cluster has that bears on what this fake serves."""

    def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}

    def binding(name: str, *groups: str) -> dict[str, Any]:
        return {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": g} for g in groups],
        }

    return [
        cluster_role(
            "cluster-admin",
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
            {"verbs": ["*"], "nonResourceURLs": ["*"]},
        ),
        binding("cluster-admin", PRIVILEGED_GROUP),
        cluster_role(
            "system:discovery",
            {
                "verbs": ["get"],
                "nonResourceURLs": [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            },
        ),
        binding("system:discovery", "system:authenticated"),
        cluster_role(
            "system:public-info-viewer",
            {
                "verbs": ["get"],
                "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
            },
        ),
        binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
        cluster_role(
            "system:basic-user",
            {
                "verbs": ["create"],
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            },
            {
                "verbs": ["create"],
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["selfsubjectreviews"],
            },
        ),
        binding("system:basic-user", "system:authenticated"),
    ]


_CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition")
_RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


def load_manifests(
    sources: Iterable[str | Path | Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Every object in ``sources``: files (multi-document YAML) or already parsed objects."""
    objects: list[dict[str, Any]] = []
    for source in sources:
        if isinstance(source, Mapping):
            documents: Iterable[Any] = [source]
        else:
            with Path(source).open(encoding="utf-8") as stream:
                documents = list(yaml.safe_load_all(stream))
        for document in documents:
            if document is None:
                continue
            if str(document.get("kind", "")).endswith("List") and "items" in document:
                objects += [dict(item) for item in document["items"]]
            else:
                objects.append(dict(document))
    return objects


def kustomization_files(directory: Path) -> list[Path]:
    """The manifests a kustomization lists under ``resources`` (directories recursively).

    Only ``resources`` and ``namespace`` are understood; any other transformer raises, so a
    change to ``config/rbac`` that this reading would get wrong fails loudly.
    """
    with (directory / "kustomization.yaml").open(encoding="utf-8") as stream:
        kustomization = yaml.safe_load(stream) or {}
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "namespace"}
    if unknown:
        raise ValueError(f"{directory}/kustomization.yaml: not modelled by the fake: {unknown}")
    files: list[Path] = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        files += kustomization_files(path) if path.is_dir() else [path]
    return files


class Rbac:
    """Roles, bindings and the users requests come from; decides like the RBAC authorizer.

    Requests carry no credentials in the fake: each is from :attr:`user` (by default the
    controller's ServiceAccount), or from ``tokens[t]`` when it sends ``Authorization: Bearer
    t`` (an unknown token is a 401, as on a real server).
    """

    def __init__(
        self,
        objects: Iterable[Mapping[str, Any]] = (),
        *,
        user: User | None = None,
        tokens: Mapping[str, User] | None = None,
        bootstrap: bool = True,
    ) -> None:
        self.user = user or User.service_account("default", CONTROLLER_SERVICE_ACCOUNT)
        """Whom a request without a bearer token is from."""
        self.tokens: dict[str, User] = dict(tokens or {})
        """Bearer token -> user, for tests that act as someone else."""
        self._roles: dict[tuple[str, str, str], Role] = {}
        self._bindings: dict[tuple[str, str, str], Binding] = {}
        if bootstrap:
            self.apply(*_bootstrap_objects())
        self.apply(*objects)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_manifests(
        cls,
        sources: Iterable[str | Path | Mapping[str, Any]],
        *,
        namespace: str = "default",
        user: User | None = None,
        tokens: Mapping[str, User] | None = None,
        bootstrap: bool = True,
    ) -> Rbac:
        """Load manifests as ``kubectl apply -n <namespace>`` would.

        Namespaced objects without a namespace get ``namespace`` (one with another namespace
        is refused, as kubectl refuses it); subjects are left alone: a ServiceAccount subject
        without a namespace means its RoleBinding's.  ``user`` defaults to the ServiceAccount
        ``mwm-controller`` in ``namespace``.
        """
        objects = []
        for obj in load_manifests(sources):
            metadata = dict(obj.get("metadata") or {})
            if obj.get("kind") not in _CLUSTER_SCOPED:
                given = metadata.get("namespace")
                if given and given != namespace:
                    raise ValueError(
                        f'the namespace from the provided object "{given}" does not match the '
                        f"namespace \"{namespace}\". You must pass '--namespace={given}' to "
                        "perform this operation."
                    )
                metadata["namespace"] = namespace
            objects.append({**obj, "metadata": metadata})
        default_user = user or User.service_account(namespace, CONTROLLER_SERVICE_ACCOUNT)
        return cls(objects, user=default_user, tokens=tokens, bootstrap=bootstrap)

    @classmethod
    def from_config(
        cls,
        namespace: str = "default",
        *,
        directory: str | Path = CONFIG_RBAC,
        user: User | None = None,
        tokens: Mapping[str, User] | None = None,
        bootstrap: bool = True,
    ) -> Rbac:
        """The project's RBAC, as ``kubectl apply -k config/rbac -n <namespace>`` applies it
        (the files its ``kustomization.yaml`` lists), on top of the default cluster policy."""
        path = Path(directory)
        with (path / "kustomization.yaml").open(encoding="utf-8") as stream:
            forced = (yaml.safe_load(stream) or {}).get("namespace")
        objects = load_manifests(kustomization_files(path))
        if forced:  # kustomize's namespace transformer overrides every namespaced object
            for obj in objects:
                if obj.get("kind") not in _CLUSTER_SCOPED:
                    obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": forced}
            namespace = forced
        return cls.from_manifests(
            objects, namespace=namespace, user=user, tokens=tokens, bootstrap=bootstrap
        )

    # -- changing it ---------------------------------------------------------------------------

    def apply(self, *objects: Mapping[str, Any]) -> None:
        """Create or replace Roles, ClusterRoles and bindings; other kinds are ignored."""
        for obj in objects:
            kind = str(obj.get("kind", ""))
            if kind not in _RBAC_KINDS:
                continue
            metadata = obj.get("metadata") or {}
            name = str(metadata.get("name") or "")
            namespace = "" if kind.startswith("Cluster") else str(metadata.get("namespace") or "")
            if not name or (not kind.startswith("Cluster") and not namespace):
                raise ValueError(f"{kind} {name!r} needs a name and a namespace: {obj}")
            if kind in ("Role", "ClusterRole"):
                rules = tuple(PolicyRule.from_dict(rule) for rule in obj.get("rules") or ())
                self._roles[kind, namespace, name] = Role(kind, name, namespace, rules)
                continue
            ref = obj.get("roleRef") or {}
            role_kind = str(ref.get("kind", ""))
            if kind == "ClusterRoleBinding" and role_kind != "ClusterRole":
                raise ValueError(f"ClusterRoleBinding {name!r}: roleRef.kind must be ClusterRole")
            subjects = tuple(Subject.from_dict(s) for s in obj.get("subjects") or ())
            self._bindings[kind, namespace, name] = Binding(
                kind, name, namespace, role_kind, str(ref.get("name", "")), subjects
            )

    def delete(self, kind: str, name: str, *, namespace: str = "") -> None:
        """Delete a Role, ClusterRole or binding; KeyError when there is none."""
        namespace = "" if kind.startswith("Cluster") else namespace
        store: dict[Any, Any] = self._roles if kind in ("Role", "ClusterRole") else self._bindings
        key = (kind, namespace, name)
        if key not in store:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise KeyError(f"no {kind} {name!r}{where}")
        del store[key]

    def _subjects(self, subject: Subject | User | Mapping[str, Any] | None) -> tuple[Subject]:
        if subject is None:
            return (self.user.subject(),)
        if isinstance(subject, User):
            return (subject.subject(),)
        if isinstance(subject, Subject):
            return (subject,)
        return (Subject.from_dict(subject),)

    def bind(
        self,
        role_kind: str,
        role_name: str,
        *,
        namespace: str,
        subject: Subject | User | Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Binding:
        """Create a RoleBinding in ``namespace`` (named ``name``, default the role's name) of a
        Role or ClusterRole to ``subject`` (default :attr:`user`), like ``kubectl create
        rolebinding``; ValueError if one of that name exists."""
        binding = Binding(
            "RoleBinding",
            name or role_name,
            namespace,
            role_kind,
            role_name,
            self._subjects(subject),
        )
        if ("RoleBinding", namespace, binding.name) in self._bindings:
            raise ValueError(f"rolebinding {binding.name!r} already exists in {namespace!r}")
        self.apply(binding.to_dict())
        return binding

    def bind_cluster(
        self,
        role_name: str,
        *,
        subject: Subject | User | Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Binding:
        """Create a ClusterRoleBinding of a ClusterRole to ``subject`` (default :attr:`user`)."""
        binding = Binding(
            "ClusterRoleBinding",
            name or role_name,
            "",
            "ClusterRole",
            role_name,
            self._subjects(subject),
        )
        if ("ClusterRoleBinding", "", binding.name) in self._bindings:
            raise ValueError(f"clusterrolebinding {binding.name!r} already exists")
        self.apply(binding.to_dict())
        return binding

    def unbind(self, name: str, *, namespace: str) -> None:
        """Delete the RoleBinding ``name`` in ``namespace``."""
        self.delete("RoleBinding", name, namespace=namespace)

    def unbind_cluster(self, name: str) -> None:
        """Delete the ClusterRoleBinding ``name``."""
        self.delete("ClusterRoleBinding", name)

    # -- reading it ----------------------------------------------------------------------------

    def role(self, kind: str, name: str, *, namespace: str = "") -> Role | None:
        return self._roles.get((kind, "" if kind == "ClusterRole" else namespace, name))

    def bindings(self, namespace: str | None = None) -> list[Binding]:
        """ClusterRoleBindings (``namespace=""``), RoleBindings in one namespace, or all."""
        return [
            binding
            for (_, ns, _), binding in self._bindings.items()
            if namespace is None or ns == namespace
        ]

    def authenticate(self, headers: Mapping[str, str]) -> User | None:
        """The request's user; None for an unknown bearer token (a 401)."""
        authorization = headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            user = self.tokens.get(token.strip())
            return None if user is None else user.authenticated()
        return self.user.authenticated()

    def _visit(self, user: User, namespace: str) -> Iterator[tuple[str, PolicyRule | None, str]]:
        """``VisitRulesFor``: (source, rule, error) for every rule bound to ``user``."""
        scopes = [""] + ([namespace] if namespace else [])
        for scope in scopes:
            for binding in self.bindings(scope):
                subject = next((s for s in binding.subjects if s.applies_to(user, scope)), None)
                if subject is None:
                    continue
                if binding.role_kind not in ("Role", "ClusterRole"):
                    yield "", None, f'unsupported role reference kind: "{binding.role_kind}"'
                    continue
                role = self.role(binding.role_kind, binding.role_name, namespace=scope)
                if role is None:
                    resource = binding.role_kind.lower()
                    yield "", None, f'{resource}.{RBAC_GROUP} "{binding.role_name}" not found'
                    continue
                for rule in role.rules:
                    yield binding.describe(subject), rule, ""

    def authorize(self, attributes: Attributes) -> Decision:
        """The RBAC authorizer's decision (with the always-allowed paths and group first)."""
        if not attributes.is_resource_request and attributes.path in ALWAYS_ALLOW_PATHS:
            return Decision(attributes, allowed=True)
        if PRIVILEGED_GROUP in attributes.user.groups:
            return Decision(attributes, allowed=True)
        errors: list[str] = []
        for source, rule, error in self._visit(attributes.user, attributes.namespace):
            if rule is not None and rule.allows(attributes):
                return Decision(attributes, allowed=True, reason=f"RBAC: allowed by {source}")
            if error:
                errors.append(error)
        reason = f"RBAC: {_aggregate(errors)}" if errors else ""
        return Decision(attributes, allowed=False, reason=reason)

    def allows(
        self,
        verb: str,
        resource: str,
        *,
        namespace: str = "",
        name: str = "",
        user: User | None = None,
    ) -> bool:
        """``kubectl auth can-i``: ``resource`` is ``plural[.group][/subresource]``."""
        qualified, _, subresource = resource.partition("/")
        plural, _, group = qualified.partition(".")
        attributes = Attributes(
            (user or self.user).authenticated(),
            verb,
            "",
            is_resource_request=True,
            api_group=group,
            namespace=namespace,
            resource=plural,
            subresource=subresource,
            name=name,
        )
        return self.authorize(attributes).allowed


# -- the API server's side -----------------------------------------------------------------------


@dataclass(eq=False)
class Warmup:
    """After a restart the RBAC authorizer's informers are empty: every request not allowed by
    the always-allowed paths or ``system:masters`` is denied until this ends."""

    requests: int | None = None
    """End after this many refused requests (None: only :meth:`end` ends it)."""
    refused: int = 0
    ended: bool = False

    def refuse(self) -> None:
        self.refused += 1
        if self.requests is not None and self.refused >= self.requests:
            self.ended = True

    def end(self) -> None:
        self.ended = True


DEFAULT_USER = User.service_account("default", CONTROLLER_SERVICE_ACCOUNT)
"""Whom requests are from while RBAC is not enforced (it shows only in warm-up denials)."""


def authorize_request(
    rbac: Rbac | None,
    warmup: Warmup | None,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
) -> Decision | None:
    """The decision for one HTTP request; None when nothing is authorized (RBAC off, warm)."""
    if rbac is None and (warmup is None or warmup.ended):
        return None
    user = rbac.authenticate(headers) if rbac is not None else DEFAULT_USER
    if user is None:
        attributes = request_attributes(method, path, query, User("system:anonymous"))
        return Decision(attributes, allowed=False, authenticated=False)
    attributes = request_attributes(method, path, query, user)
    if warmup is not None and not warmup.ended:
        always = (
            not attributes.is_resource_request and attributes.path in ALWAYS_ALLOW_PATHS
        ) or PRIVILEGED_GROUP in user.groups
        if not always:
            warmup.refuse()
            return Decision(attributes, allowed=False, warming_up=True)
        return Decision(attributes, allowed=True)
    assert rbac is not None
    return rbac.authorize(attributes)
