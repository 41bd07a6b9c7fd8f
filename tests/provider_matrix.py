"""The real provider clients tested on per-sub-agent loops, and how each reaches the fake.

Each :class:`Provider` builds its real LangChain chat model against a local
:class:`~tests.provider_servers.ProviderServer` with explicit ``base_url``/``api_key``
arguments, and names the environment an ``init_chat_model`` string needs (set per test
with ``monkeypatch``, so nothing leaks between tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from .provider_servers import ProviderServer

#: Model name that makes the fake server wait 0.2 s before each streamed word.
SLOW = "slow-0.2"


@dataclass(frozen=True)
class Provider:
    name: str
    #: Wire format, a key of provider_servers.MODEL_CALL_PATHS.
    kind: str
    #: (server, model name, streaming, **model options) -> the real chat model.
    make: Callable[..., BaseChatModel]
    #: The ``init_chat_model`` string, and the environment it needs.
    string: str
    env: Callable[[ProviderServer], dict[str, str]]
    #: Which variants exist: (False, True) = plain and streamed.
    streaming: tuple[bool, ...] = (False, True)
    #: Runs in a row for the factory and string forms, which build the provider's clients
    #: on every run: 5 where that alone costs ~0.1-0.5 s a run (test time, not a limit).
    in_a_row_built: int = 20

    def __str__(self) -> str:
        return self.name


def _anthropic(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(
        base_url=srv.root_url, api_key="test", model=model, streaming=streaming, **options
    )  # type: ignore[call-arg]


def _groq(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_groq import ChatGroq

    return ChatGroq(
        base_url=srv.root_url, api_key="test", model=model, streaming=streaming, **options
    )  # type: ignore[arg-type]


def _mistral(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_mistralai import ChatMistralAI

    return ChatMistralAI(
        endpoint=srv.base_url, api_key="test", model=model, streaming=streaming, **options
    )  # type: ignore[arg-type]


def _ollama(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_ollama import ChatOllama

    return ChatOllama(base_url=srv.root_url, model=model, **options)


def _google(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_google_genai import ChatGoogleGenerativeAI

    return ChatGoogleGenerativeAI(
        base_url=srv.root_url, api_key="test", model=model, streaming=streaming, **options
    )


def _bedrock(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(
        endpoint_url=srv.root_url,
        region_name="us-east-1",
        aws_access_key_id="test",  # type: ignore[arg-type]
        aws_secret_access_key="test",  # type: ignore[arg-type]
        model=model,
        streaming=streaming,
        **options,
    )


def _deepseek(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_deepseek import ChatDeepSeek

    return ChatDeepSeek(
        api_base=srv.base_url, api_key="test", model=model, streaming=streaming, **options
    )  # type: ignore[arg-type]


def _xai(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_xai import ChatXAI

    return ChatXAI(
        xai_api_base=srv.base_url, api_key="test", model=model, streaming=streaming, **options
    )  # type: ignore[arg-type]


def _azure(srv: ProviderServer, model: str, streaming: bool, **options: Any) -> BaseChatModel:
    from langchain_openai import AzureChatOpenAI

    return AzureChatOpenAI(
        azure_endpoint=srv.root_url,
        api_key="test",  # type: ignore[arg-type]
        api_version="2024-10-21",
        azure_deployment=model,
        model=model,
        streaming=streaming,
        **options,
    )


def _env(
    **values: Callable[[ProviderServer], str] | str,
) -> Callable[[ProviderServer], dict[str, str]]:
    def build(srv: ProviderServer) -> dict[str, str]:
        return {k: v(srv) if callable(v) else v for k, v in values.items()}

    return build


def _root(srv: ProviderServer) -> str:
    return srv.root_url


def _v1(srv: ProviderServer) -> str:
    return srv.base_url


PROVIDERS: list[Provider] = [
    Provider(
        "anthropic",
        "anthropic",
        _anthropic,
        "anthropic:claude-test",
        _env(ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=_root),
    ),
    Provider("groq", "groq", _groq, "groq:g", _env(GROQ_API_KEY="test", GROQ_API_BASE=_root)),
    Provider(
        "mistral",
        "openai",
        _mistral,
        "mistralai:m",
        _env(MISTRAL_API_KEY="test", MISTRAL_BASE_URL=_v1),
    ),
    # ChatOllama always streams over HTTP (NDJSON): one variant.
    Provider("ollama", "ollama", _ollama, "ollama:o", _env(OLLAMA_HOST=_root), streaming=(True,)),
    Provider(
        "google",
        "google",
        _google,
        "google_genai:gemini-test",
        _env(GOOGLE_API_KEY="test", GOOGLE_GEMINI_BASE_URL=_root),
        in_a_row_built=5,  # a google-genai Client costs ~100 ms to build
    ),
    Provider(
        "bedrock",
        "bedrock",
        _bedrock,
        "bedrock_converse:b",
        _env(
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=_root,
        ),
        # Its async calls run the sync boto3 call in a thread (no streaming on ainvoke),
        # and building a boto3 client costs ~0.3-0.5 s, paid by every factory/string run.
        streaming=(False,),
        in_a_row_built=5,
    ),
    Provider(
        "deepseek",
        "openai",
        _deepseek,
        "deepseek:d",
        _env(DEEPSEEK_API_KEY="test", DEEPSEEK_API_BASE=_v1),
    ),
    Provider(
        "xai",
        "openai",
        _xai,
        "xai:grok",
        _env(XAI_API_KEY="test", XAI_API_BASE=_v1),
        in_a_row_built=5,  # four OpenAI SDK clients (own TLS contexts) per ChatXAI
    ),
    Provider(
        "azure",
        "openai",
        _azure,
        "azure_openai:dep",
        _env(
            AZURE_OPENAI_API_KEY="test",
            AZURE_OPENAI_ENDPOINT=_root,
            OPENAI_API_VERSION="2024-10-21",
        ),
        in_a_row_built=5,  # builds its SDK clients (own TLS contexts) per instance
    ),
]


def model_spec(provider: Provider, srv: ProviderServer, form: str, streaming: bool) -> Any:
    """The ``SubagentConfig.model`` of one form: an instance, a factory or a string."""
    if form == "instance":
        return provider.make(srv, "test-model", streaming)
    if form == "factory":
        return lambda: provider.make(srv, "test-model", streaming)
    if form == "string":
        return provider.string
    raise ValueError(f"form must be instance, factory or string, got {form!r}")
