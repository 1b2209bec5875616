# The OpenAI endpoints through the official `openai` client: models, chat and completions,
# streaming and not, usage, finish reasons, stop strings, and its typed errors.
import openai
import pytest


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_models(client):
    models = client.models.list().data
    assert len(models) == 1 and models[0].id == "SmolLM2-135M-Instruct.Q4_1"


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hello."}],
                                       max_tokens=8, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_equals_non_streaming(client):
    kw = dict(model="m", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completions_streaming_and_not(client):
    kw = dict(model="m", prompt="The capital of France is", max_tokens=6, temperature=0)
    r = client.completions.create(**kw)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 6
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(stream=True, **kw))
    assert streamed == r.choices[0].text


def test_max_tokens_gives_length(client):
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Tell a long story."}],
                                       max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


def test_ignore_eos_runs_to_max_tokens(client):
    # "Say OK." ends early with end-of-generation; with ignore_eos it never samples one.
    kw = dict(model="m", messages=[{"role": "user", "content": "Reply with the single word OK."}],
              max_tokens=40, temperature=0)
    free = client.chat.completions.create(**kw)
    assert free.choices[0].finish_reason == "stop" and free.usage.completion_tokens < 40
    forced = client.chat.completions.create(extra_body={"ignore_eos": True}, **kw)
    assert forced.choices[0].finish_reason == "length" and forced.usage.completion_tokens == 40
    assert forced.choices[0].message.content.startswith(free.choices[0].message.content)


def test_stop_string_cuts_the_text(client):
    kw = dict(model="m", prompt="1, 2, 3, 4, 5, 6,", max_tokens=16, temperature=0)
    free = client.completions.create(**kw).choices[0].text
    assert " 8," in free, free  # the model counts on; the stop string below occurs
    r = client.completions.create(stop=[" 8"], **kw)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == free[: free.index(" 8")]
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(stream=True, stop=[" 8"], **kw))
    assert streamed == r.choices[0].text


def test_seeded_sampling_is_reproducible(client):
    kw = dict(model="m", prompt="Once upon a time", max_tokens=12, temperature=0.9, top_p=0.9, seed=7,
              extra_body={"top_k": 40})
    a = client.completions.create(**kw).choices[0].text
    b = client.completions.create(**kw).choices[0].text
    assert a == b


def test_typed_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=-3)
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=[{"role": "wizard", "content": "hi"}])
    assert e.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"context_id": "ctx-0000000000000000"})
    # Fields a server may not know are ignored.
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                       temperature=0, user="someone", logit_bias={}, extra_body={"whatever": [1]})
    assert r.usage.completion_tokens == 2
