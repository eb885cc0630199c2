"""Build the Argo WorkflowTemplate of a checked Workflow with Hera (validated spec -> Hera objects).

Shape of the result (see docs/compiler.md for a drawing):

    main (DAG)                       one task per step, in order; a conditional step adds a
                                     `<step>-condition` task, an approval gate adds
                                     `<step>-approval-request` and the `<step>-approval` suspend
    exit-handler (DAG, onExit)       `pf-outputs` computes the workflow outputs, then one
                                     `sink-<name>` task per sink, in parallel
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from collections.abc import Mapping
from typing import Any

from hera.workflows import DAG, Container, Env, Parameter, SecretEnv, Suspend, Task
from hera.workflows import RetryStrategy as HeraRetryStrategy
from hera.workflows import WorkflowTemplate as HeraWorkflowTemplate
from hera.workflows.models import (
    Backoff,
    DAGTask,
    IntOrString,
    LabelValueFrom,
    Quantity,
    ResourceRequirements,
    SuppliedValueFrom,
    ValueFrom,
    WorkflowMetadata,
)
from pydantic import ValidationError

from punchingfist import __version__
from punchingfist.api import Sink, Workflow
from punchingfist.api.operatorconfigs import RUNBOOK_TOKEN_ENV, OperatorConfigSpec
from punchingfist.api.runspec import (
    CONDITION_FILE,
    OFFERED_FILE,
    OUTPUTS_FILE,
    PREVIEW_FILE,
    RESULT_FILE,
    ROLLBACK_FILE,
    SPEC_ENV,
    AgentTask,
    ApprovalTask,
    CliTask,
    LLMSettings,
    OutputSpec,
    RemediationTask,
    RunbookConfigMaps,
    RunbookGit,
    RunbooksTask,
    SinkTask,
    TaskSpec,
    ToolSpec,
    not_run_result,
    result_env,
)
from punchingfist.api.workflows import (
    AgentAction,
    AgentStep,
    CliAction,
    CliStep,
    ConditionalStep,
    RemediationStep,
    Resources,
    Step,
    StepPolicy,
    Tool,
)
from punchingfist.compiler import naming
from punchingfist.compiler.concurrency import synchronization
from punchingfist.compiler.credentials import Credentials, SecretEnvVar
from punchingfist.compiler.validating import KNOWN_PROVIDER_TYPES, Checked
from punchingfist.errors import CompileError

_WIRING_ENV = {
    "PF_EVENT": "{{workflow.parameters.event}}",
    "PF_SOURCE": "{{workflow.parameters.source}}",
    "PF_FINGERPRINT": "{{workflow.parameters.fingerprint}}",
    "PF_RUN_NAME": "{{workflow.name}}",
    "PF_RUN_UID": "{{workflow.uid}}",
    "PF_NAMESPACE": "{{workflow.namespace}}",
}
_EXIT_ENV = {
    "PF_WORKFLOW_STATUS": "{{workflow.status}}",
    "PF_WORKFLOW_FAILURES": "{{workflow.failures}}",
    "PF_WORKFLOW_DURATION": "{{workflow.duration}}",
    "PF_WORKFLOW_CREATED": "{{workflow.creationTimestamp}}",
}
_DONE = ("Succeeded", "Failed", "Errored", "Skipped")


class Builder:
    """Turns one checked Workflow into Hera objects."""

    def __init__(
        self,
        workflow: Workflow,
        sinks: Mapping[str, Sink],
        config: OperatorConfigSpec | None,
        checked: Checked,
        *,
        image: str,
        accounts: tuple[str, str],
    ) -> None:
        self.workflow = workflow
        self.image = image
        self.investigator, self.remediator = accounts
        self.spec = workflow.spec
        self.sinks = sinks
        self.config = config
        self.checked = checked
        self.credentials = Credentials(workflow, config)
        self.templates: list[Any] = []
        self.environment = sorted(self.spec.runtime.environment)

    # -- the whole template -------------------------------------------------------------

    def _references(self) -> dict[str, str]:
        """The annotation of the secret references the steps read, if any (after the steps
        are built: building them collects the references)."""
        found = self.credentials.references
        if not found:
            return {}
        return {naming.ANNOTATION_SECRET_REFERENCES: json.dumps(found, sort_keys=True)}

    def build(self) -> HeraWorkflowTemplate:
        tasks: list[Task] = []
        previous: str | None = None
        for index, step in enumerate(self.spec.steps):
            tasks += self._step(step, index, previous)
            previous = step.name
        main = DAG(name=naming.ENTRYPOINT, tasks=list[Task | DAGTask](tasks))
        exit_handler = self._exit_handler()
        templates = [main, *self.templates]
        if exit_handler is not None:
            templates.insert(1, exit_handler)
        name = self.workflow.name
        return HeraWorkflowTemplate(
            name=name,
            namespace=self.workflow.metadata.namespace,
            labels={naming.LABEL_MANAGED_BY: "punchingfist", naming.LABEL_WORKFLOW: name},
            annotations={
                naming.ANNOTATION_SPEC_HASH: self._spec_hash(),
                naming.ANNOTATION_COMPILER: __version__,
                **self._references(),
            },
            entrypoint=naming.ENTRYPOINT,
            on_exit=naming.EXIT_HANDLER if exit_handler is not None else None,
            service_account_name=self.spec.runtime.service_account or self.investigator,
            synchronization=synchronization(self.config.concurrency if self.config else None, name),
            arguments=[
                Parameter(name="event", value="{}", description="The event (alert) as JSON."),
                Parameter(name="source", value="manual", description="The Source that fired."),
                Parameter(name="fingerprint", value="", description="The alert fingerprint."),
            ],
            workflow_metadata=WorkflowMetadata(
                labels={naming.LABEL_MANAGED_BY: "punchingfist", naming.LABEL_WORKFLOW: name},
                labels_from={
                    naming.LABEL_SOURCE: LabelValueFrom(expression="workflow.parameters.source"),
                    naming.LABEL_FINGERPRINT: LabelValueFrom(
                        expression="workflow.parameters.fingerprint"
                    ),
                },
            ),
            templates=templates,
        )

    def _spec_hash(self) -> str:
        used = [self.sinks[ref.name].spec.dump() for ref in self.spec.sinks]
        payload = {
            "workflow": self.spec.dump(),
            "sinks": used,
            "config": self.config.dump() if self.config else None,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    # -- steps --------------------------------------------------------------------------

    def _resources(self, step: Step, index: int) -> Resources | None:
        """The runtime's resources with the step's own over them."""
        runtime = self.spec.runtime.resources
        if runtime is None:
            return step.resources
        try:
            return runtime.merged(step.resources)
        except ValidationError as error:  # a step's request above the runtime's limit
            message = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
            raise CompileError(
                f"with spec.runtime.resources: {message}",
                resource=self.workflow.ref,
                field=f"spec.steps[{index}].resources",
            ) from None

    def _step(self, step: Step, step_index: int, previous: str | None) -> list[Task]:
        if isinstance(step, RemediationStep):
            return self._remediation(step, step_index, previous)
        tasks: list[Task] = []
        reads = list(self.checked.reads[step.name])
        depends = previous
        when: list[str] = []
        action: CliStep | AgentStep | AgentAction | CliAction
        if isinstance(step, ConditionalStep):
            action, gated = step.action, step.gated
            timeout = step.action.timeout_minutes or step.timeout_minutes
            condition = naming.condition_task(step.name)
            spec = self._task_spec("condition", step.name, reads, condition=step.condition)
            self._container(
                condition,
                spec,
                reads=reads,
                step=step.name,
                outputs=[_file_output(naming.CONDITION_PARAM, CONDITION_FILE, "false")],
            )
            tasks.append(self._task(condition, depends, reads))
            depends = condition
            when.append(_is_true(f"tasks.{condition}.outputs.parameters.{naming.CONDITION_PARAM}"))
        else:
            action, gated, timeout = step, step.approval_required, step.timeout_minutes
        if gated:
            tasks += self._gate(step, action, depends, when, reads)
            depends = naming.approval_task(step.name)
            when.append(_is_true(f"tasks.{depends}.outputs.parameters.approved"))
        kind = "agent" if isinstance(action, (AgentStep, AgentAction)) else "cli"
        spent_by = self._run_budget_steps(step_index) if kind == "agent" else None
        wired = reads + [name for name in spent_by or [] if name not in reads]
        spec = self._task_spec(
            kind,
            step.name,
            reads,
            gated=gated,
            timeout=timeout,
            cli=CliTask(command=action.command)
            if isinstance(action, (CliStep, CliAction))
            else None,
            agent=self._agent(action, step.policy, spent_by)
            if isinstance(action, (AgentStep, AgentAction))
            else None,
        )
        gate_inputs = list(naming.APPROVAL_PARAMS) if gated else []
        self._container(
            step.name,
            spec,
            reads=wired,
            step=step.name,
            extra_inputs=gate_inputs,
            secrets=self.credentials.agent() if kind == "agent" else [],
            outputs=[_result_output(step.name)],
            service_account=step.service_account
            or self.spec.runtime.service_account
            or (self.remediator if gated else None),
            resources=self._resources(step, step_index),
            timeout=timeout,
            policy=step.policy,
        )
        gate_args = _gate_arguments(step.name, gate_inputs)
        tasks.append(self._task(step.name, depends, wired, when=when, extra=gate_args))
        return tasks

    def _remediation(self, step: RemediationStep, index: int, previous: str | None) -> list[Task]:
        """`<step>-preview` (server-side dry run, diff, RBAC), then, when the fix is offered,
        the approval gate and `<step>`, which applies, checks and rolls back. Both run as the
        remediator: a server-side dry run needs the same rights as the change. Under the
        Workflow's `dryRun` there is no gate and `<step>` only records the preview."""
        fix = step.remediation
        safety = step.policy.safety if step.policy else None
        policy = fix.policy
        if policy.namespaces is None and safety and safety.allowed_namespaces:
            policy = policy.model_copy(update={"namespaces": list(safety.allowed_namespaces)})
        dry_run = bool(self.spec.dry_run)
        gated = step.approval_required and not dry_run
        account = step.service_account or self.spec.runtime.service_account or self.remediator
        preview = naming.preview_task(step.name)
        reads = list(self.checked.reads[step.name])
        task = RemediationTask(
            fix_from=fix.fix_from,
            action=fix.action,
            policy=policy,
            check=fix.check,
            on_failure=fix.on_failure,
            dry_run=dry_run,
            account=account,
            preview=preview,
        )
        resources = self._resources(step, index)
        spec = self._task_spec("remediation-preview", step.name, reads, remediation=task)
        self._container(
            preview,
            spec,
            reads=reads,
            step=step.name,
            outputs=[
                _file_output(naming.RESULT_PARAM, RESULT_FILE, "{}"),
                _file_output(naming.OFFERED_PARAM, OFFERED_FILE, "false"),
                _file_output(naming.PREVIEW_PARAM, PREVIEW_FILE, "{}"),
            ],
            service_account=account,
            resources=resources,
        )
        tasks = [self._task(preview, previous, reads)]
        depends, when = preview, []
        if not dry_run:
            when.append(_is_true(f"tasks.{preview}.outputs.parameters.{naming.OFFERED_PARAM}"))
        applying = [*reads, preview]
        if gated:
            tasks += self._gate(step, step, depends, when, applying)
            depends = naming.approval_task(step.name)
            when.append(_is_true(f"tasks.{depends}.outputs.parameters.approved"))
        gate_inputs = list(naming.APPROVAL_PARAMS) if gated else []
        spec = self._task_spec(
            "remediation",
            step.name,
            applying,
            gated=gated,
            timeout=step.timeout_minutes,
            remediation=task,
        )
        ask = task.on_failure == "ask" and not dry_run
        rollback_output = _file_output(naming.ROLLBACK_PARAM, ROLLBACK_FILE, "false")
        self._container(
            step.name,
            spec,
            reads=applying,
            step=step.name,
            extra_inputs=gate_inputs,
            outputs=[_result_output(step.name), *([rollback_output] if ask else [])],
            service_account=account,
            resources=resources,
            timeout=step.timeout_minutes,
        )
        gate_args = _gate_arguments(step.name, gate_inputs)
        tasks.append(self._task(step.name, depends, applying, when=when, extra=gate_args))
        if ask:
            tasks += self._rollback(step, task, applying, account, resources)
        return tasks

    def _rollback(
        self,
        step: RemediationStep,
        task: RemediationTask,
        applying: list[str],
        account: str,
        resources: Resources | None,
    ) -> list[Task]:
        """onFailure ask: when the fix task says its failed fix waits (`rollback` true), a
        second gate `<step>-rollback-approval`, then `<step>-rollback` puts the saved state
        back. Its result replaces the step's (the final outcome)."""
        rollback = naming.rollback_task(step.name)
        reads = [*applying, step.name]
        needed = [_is_true(f"tasks.{step.name}.outputs.parameters.{naming.ROLLBACK_PARAM}")]
        summary = f"roll back the fix of step {step.name}: its post-check failed (see its result)"
        gate_step = step.model_copy(update={"name": rollback})
        tasks = self._gate(gate_step, step, step.name, needed, reads, summary=summary)
        gate = naming.approval_task(rollback)
        spec = self._task_spec(
            "remediation-rollback", step.name, reads, gated=True, remediation=task
        )
        self._container(
            rollback,
            spec,
            reads=reads,
            step=step.name,
            extra_inputs=list(naming.APPROVAL_PARAMS),
            outputs=[_result_output(step.name)],
            service_account=account,
            resources=resources,
        )
        when = [*needed, _is_true(f"tasks.{gate}.outputs.parameters.approved")]
        answer = _gate_arguments(rollback, list(naming.APPROVAL_PARAMS))
        tasks.append(self._task(rollback, gate, reads, when=when, extra=answer))
        return tasks

    def _gate(
        self,
        step: Step,
        action: CliStep | AgentStep | AgentAction | CliAction | RemediationStep,
        depends: str | None,
        when: list[str],
        reads: list[str],
        *,
        summary: str | None = None,
    ) -> list[Task]:
        request = naming.approval_request_task(step.name)
        gate = naming.approval_task(step.name)
        seconds = _seconds(step.approval_timeout_minutes)
        approvers = (
            list(self.config.approvals.approvers) if self.config and self.config.approvals else []
        )
        if summary is None:
            summary = _summary(action)
        spec = self._task_spec(
            "approval-request",
            step.name,
            reads,
            approval=ApprovalTask(
                gate=gate,
                timeout_seconds=seconds,
                approvers=approvers,
                summary=summary,
                channel=self._slack_channel(),
            ),
        )
        slack = self.credentials.slack()
        self._container(
            request,
            spec,
            reads=reads,
            step=step.name,
            secrets=[slack] if slack else [],
            outputs=[_file_output(naming.RESULT_PARAM, RESULT_FILE, "{}")],
        )
        self.templates.append(
            Suspend(
                name=gate,
                duration=str(seconds),
                inputs=[
                    Parameter(
                        name="approved",
                        default="false",
                        enum=["true", "false"],
                        description="true to let the step run; the deadline means false",
                    ),
                    Parameter(name="approver", default="", description="Who decided."),
                    Parameter(name="comment", default="", description="Why."),
                ],
                outputs=[
                    Parameter(
                        name=name,
                        value_from=ValueFrom(supplied=SuppliedValueFrom(), default=default),
                    )
                    for name, default in (("approved", "false"), ("approver", ""), ("comment", ""))
                ],
            )
        )
        # A failed request (chat down) must not block the gate: it can be answered by CLI/API.
        done = " || ".join(f"{request}.{phase}" for phase in _DONE)
        return [
            self._task(request, depends, reads, when=when),
            Task(name=gate, template=gate, depends=done, when=" && ".join(when) or None),
        ]

    def _agent(
        self, agent: AgentStep | AgentAction, policy: StepPolicy | None, spent_by: list[str] | None
    ) -> AgentTask:
        safety = policy.safety if policy else None
        tools = [_tool(tool) for tool in agent.tools]
        # A script of the workflow's own named `runbook` wins over the runbook tool.
        runbooks = self._runbooks() if all(t.name != "runbook" for t in tools) else None
        if runbooks is not None:
            tools.append(ToolSpec(name="runbook"))
        return AgentTask(
            goal=agent.goal,
            tools=tools,
            context=agent.context,
            max_iterations=agent.max_iterations,
            llm=self._llm(),
            token_budget=safety.token_budget if safety else None,
            cost_budget_usd=self._cost_budget(safety.cost_budget_usd if safety else None),
            run_budget_usd=self._run_budget(),
            run_budget_steps=spent_by,
            require_approval=list(safety.require_approval) if safety else [],
            allowed_namespaces=list(safety.allowed_namespaces)
            if safety and safety.allowed_namespaces
            else None,
            runbooks=runbooks,
        )

    def _runbooks(self) -> RunbooksTask | None:
        """The OperatorConfig's `spec.runbooks` as the `runbook` tool reads them (the git
        token arrives as RUNBOOKS_GIT_TOKEN, see `Credentials.agent`)."""
        config = self.config.runbooks if self.config else None
        if config is None:
            return None
        git = config.git
        maps = config.config_maps
        return RunbooksTask(
            git=RunbookGit(
                url=git.url,
                ref=git.ref,
                path=git.path or "",
                credentials_env=RUNBOOK_TOKEN_ENV if git.credentials_secret else None,
            )
            if git
            else None,
            config_maps=RunbookConfigMaps(
                namespace=maps.namespace, names=list(maps.names), selector=dict(maps.selector)
            )
            if maps
            else None,
        )

    def _llm(self) -> LLMSettings:
        wanted = self.spec.runtime.llm_config
        llm_config = self.config.llm if self.config else None
        name = (
            wanted.provider if wanted else (llm_config.default_provider if llm_config else "local")
        )
        configured = llm_config.providers.get(name) if llm_config else None
        kind = (configured.type if configured else None) or (
            name if name in KNOWN_PROVIDER_TYPES else "local"
        )

        def pick(field: str) -> Any:
            value = getattr(wanted, field, None) if wanted else None
            return value if value is not None else getattr(configured, field, None)

        return LLMSettings(
            provider=name,
            type="anthropic" if kind == "claude" else kind,
            endpoint=pick("endpoint"),
            model=pick("model"),
            temperature=pick("temperature"),
            max_tokens=pick("max_tokens"),
            mode=pick("mode"),
            prices=llm_config.price_table() if llm_config and llm_config.prices else None,
        )

    def _cost_budget(self, own: float | None) -> float | None:
        """The step's own LLM budget (USD), else the OperatorConfig's `spec.llm.stepBudgetUsd`."""
        llm_config = self.config.llm if self.config else None
        return own if own is not None else (llm_config.step_budget_usd if llm_config else None)

    def _run_budget(self) -> float | None:
        """The run's LLM budget (USD): the Workflow's `spec.safety.costBudgetUsd`, else the
        OperatorConfig's `spec.llm.runBudgetUsd`."""
        own = self.spec.safety.cost_budget_usd if self.spec.safety else None
        llm_config = self.config.llm if self.config else None
        return own if own is not None else (llm_config.run_budget_usd if llm_config else None)

    def _run_budget_steps(self, index: int) -> list[str] | None:
        """With a run budget, the agent steps before step `index`: what they spent counts
        against it (their results are wired into the step, not shown to its model)."""
        if self._run_budget() is None:
            return None
        return [
            step.name
            for step in self.spec.steps[:index]
            if isinstance(step, AgentStep)
            or (isinstance(step, ConditionalStep) and isinstance(step.action, AgentAction))
        ]

    # -- exit handler -------------------------------------------------------------------

    def _exit_handler(self) -> DAG | None:
        if not self.spec.sinks and not self.spec.outputs:
            return None
        steps = [step.name for step in self.spec.steps]
        globals_ = {
            naming.result_input(name): "{{=workflow?.outputs?.parameters?."
            + naming.global_result(name)
            + " ?? ''}}"
            for name in steps
        }
        spec = self._task_spec(
            "outputs",
            None,
            steps,
            outputs=[OutputSpec(name=o.name, value=o.value) for o in self.spec.outputs],
            steps=steps,
        )
        self._container(
            naming.OUTPUTS_TASK,
            spec,
            reads=steps,
            exit_handler=True,
            outputs=[_file_output(naming.OUTPUTS_PARAM, OUTPUTS_FILE, "{}")],
        )
        tasks = [
            Task(
                name=naming.OUTPUTS_TASK,
                template=naming.OUTPUTS_TASK,
                arguments=_arguments(globals_),
            )
        ]
        outputs_ref = (
            f"{{{{tasks.{naming.OUTPUTS_TASK}.outputs.parameters.{naming.OUTPUTS_PARAM}}}}}"
        )
        done = " || ".join(f"{naming.OUTPUTS_TASK}.{phase}" for phase in _DONE[:3])
        for ref in self.spec.sinks:
            sink = self.sinks[ref.name]
            name = naming.sink_task(sink.name)
            secret = self.credentials.sink(sink)
            spec = self._task_spec(
                "sink",
                None,
                steps,
                steps=steps,
                sink=SinkTask(
                    name=sink.name,
                    type=sink.spec.type,
                    config=self._public_config(sink),
                    condition=ref.condition,
                    secret_env=secret.env if secret else None,
                ),
            )
            self._container(
                name,
                spec,
                reads=steps,
                extra_inputs=[naming.OUTPUTS_PARAM],
                exit_handler=True,
                secrets=[secret] if secret else [],
                outputs=[_file_output(naming.RESULT_PARAM, RESULT_FILE, "{}")],
            )
            tasks.append(
                Task(
                    name=name,
                    template=name,
                    depends=done,
                    arguments=_arguments({**globals_, naming.OUTPUTS_PARAM: outputs_ref}),
                )
            )
        return DAG(name=naming.EXIT_HANDLER, tasks=list[Task | DAGTask](tasks))

    def _slack_channel(self) -> str | None:
        chat = self.config.chat if self.config else None
        return chat.slack.channel_id if chat is not None and chat.slack is not None else None

    def _public_config(self, sink: Sink) -> dict[str, Any]:
        """The sink's config as the runtime sees it: credentials removed (they come by env),
        a Slack sink's channel defaulted from the OperatorConfig."""
        config = {k: v for k, v in sink.spec.config.dump().items() if k not in _SECRET_FIELDS}
        channel = self._slack_channel()
        if sink.spec.type == "slack" and "channel" not in config and channel:
            config["channel"] = channel
        return config

    # -- shared pieces ------------------------------------------------------------------

    def _task_spec(self, kind: Any, step: str | None, reads: list[str], **fields: Any) -> TaskSpec:
        timeout = fields.pop("timeout", None)
        return TaskSpec(
            kind=kind,
            workflow=self.workflow.name,
            step=step,
            inputs=reads,
            environment=self.environment,
            timeout_seconds=_seconds(timeout) if timeout else None,
            **fields,
        )

    def _task(
        self,
        name: str,
        depends: str | None,
        reads: list[str],
        *,
        when: list[str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> Task:
        values = {
            naming.result_input(
                step
            ): f"{{{{tasks.{step}.outputs.parameters.{naming.RESULT_PARAM}}}}}"
            for step in reads
        }
        values.update(extra or {})
        return Task(
            name=name,
            template=name,
            depends=depends,
            when=" && ".join(when) if when else None,
            arguments=_arguments(values) if values else None,
        )

    def _container(
        self,
        name: str,
        spec: TaskSpec,
        *,
        reads: list[str],
        outputs: list[Parameter],
        step: str | None = None,
        extra_inputs: list[str] | None = None,
        secrets: list[SecretEnvVar] | None = None,
        service_account: str | None = None,
        timeout: float | None = None,
        policy: StepPolicy | None = None,
        exit_handler: bool = False,
        resources: Resources | None = None,
    ) -> None:
        env: list[Env | SecretEnv] = [Env(name=SPEC_ENV, value=spec.encode())]
        env += [Env(name=key, value=value) for key, value in _WIRING_ENV.items()]
        if exit_handler:
            env += [Env(name=key, value=value) for key, value in _EXIT_ENV.items()]
        env += [
            Env(
                name=result_env(read),
                value=f"{{{{inputs.parameters.{naming.result_input(read)}}}}}",
            )
            for read in reads
        ]
        for extra in extra_inputs or []:
            variable = "PF_OUTPUTS" if extra == naming.OUTPUTS_PARAM else _approval_env(extra)
            env.append(Env(name=variable, value=f"{{{{inputs.parameters.{extra}}}}}"))
        env += [
            Env(name=key, value=value)
            for key, value in sorted(self.spec.runtime.environment.items())
        ]
        env += [
            SecretEnv(name=s.env, secret_name=s.secret, secret_key=s.key) for s in secrets or []
        ]
        labels = {naming.LABEL_TASK: name}
        if step is not None:
            labels[naming.LABEL_STEP] = step
        self.templates.append(
            Container(
                name=name,
                image=self.image,
                command=["pf-runtime", spec.kind],
                env=env,
                inputs=[Parameter(name=naming.result_input(read)) for read in reads]
                + [Parameter(name=extra) for extra in extra_inputs or []],
                outputs=outputs,
                labels=labels,
                service_account_name=service_account,
                resources=_requirements(resources or self.spec.runtime.resources),
                active_deadline_seconds=_seconds(timeout) if timeout else None,
                retry_strategy=_retry(policy),
            )
        )


def _gate_arguments(step: str, names: list[str]) -> dict[str, str]:
    """The gate's answer (approved, approver, comment) as arguments of the gated task."""
    gate = naming.approval_task(step)
    return {name: f"{{{{tasks.{gate}.outputs.parameters.{name}}}}}" for name in names}


def _summary(action: CliStep | AgentStep | AgentAction | CliAction | RemediationStep) -> str:
    """What a gate asks about: the agent's goal, the command, or the fix."""
    if isinstance(action, RemediationStep):
        return _fix_summary(action)
    if isinstance(action, (AgentStep, AgentAction)):
        return action.goal
    return action.command


def _fix_summary(step: RemediationStep) -> str:
    """What the gate of a remediation step asks about (the preview shows the exact change)."""
    fix = step.remediation
    if fix.fix_from is not None:
        return f"apply the fix step {fix.fix_from} proposed (see its preview)"
    return (
        f"apply the declared {fix.action.get('action') if fix.action else ''} fix (see its preview)"
    )


def _requirements(resources: Resources | None) -> ResourceRequirements | None:
    if resources is None or not (resources.requests or resources.limits):
        return None
    return ResourceRequirements(
        requests={k: Quantity(root=v) for k, v in resources.requests.items()} or None,
        limits={k: Quantity(root=v) for k, v in resources.limits.items()} or None,
    )


def _seconds(minutes: float) -> int:
    """Whole seconds, at least one: a positive timeout never becomes 'no timeout'."""
    return max(1, math.ceil(minutes * 60))


def _approval_env(name: str) -> str:
    return {"approved": "PF_APPROVED", "approver": "PF_APPROVER", "comment": "PF_APPROVAL_COMMENT"}[
        name
    ]


def _is_true(reference: str) -> str:
    # Quoted: an empty or odd value then compares as text instead of breaking the expression.
    return f"'{{{{{reference}}}}}' == 'true'"


def _arguments(values: dict[str, str]) -> list[Parameter]:
    return [Parameter(name=key, value=value) for key, value in values.items()]


def _file_output(name: str, path: str, default: str) -> Parameter:
    return Parameter(name=name, value_from=ValueFrom(path=path, default=default))


def _result_output(step: str) -> Parameter:
    return Parameter(
        name=naming.RESULT_PARAM,
        value_from=ValueFrom(path=RESULT_FILE, default=not_run_result(step)),
        global_name=naming.global_result(step),
    )


def _retry(policy: StepPolicy | None) -> HeraRetryStrategy | None:
    retry = policy.retry_policy if policy else None
    if retry is None or retry.max_attempts <= 1:
        return None
    return HeraRetryStrategy(
        limit=retry.max_attempts - 1,
        retry_policy="OnFailure",
        backoff=Backoff(
            duration=retry.initial_delay,
            factor=IntOrString(root=2 if retry.backoff == "exponential" else 1),
            cap=retry.max_delay,
        ),
    )


def _tool(tool: Tool) -> ToolSpec:
    command = tool.command
    if isinstance(command, str):
        command = shlex.split(command)
    return ToolSpec(
        name=tool.name,
        description=tool.description,
        endpoint=tool.endpoint,
        command=command,
        allowed_domains=tool.allowed_domains,
        parameters=list(tool.parameters),
        env=list(tool.env),
    )


_SECRET_FIELDS = {
    "botToken",
    "botTokenSecret",
    "routingKey",
    "routingKeySecret",
    "credentialsSecret",
    "authSecret",
}
