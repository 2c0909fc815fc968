// The batch/v1 Job schema, written from the Kubernetes API reference (Job, JobSpec, PodTemplateSpec,
// PodSpec, Container, EnvVar, ResourceRequirements, VolumeMount, Volume), for the fields a batch
// job uses. Objects are strict, as `kubectl apply --validate=strict` is: a field that is not in the
// API is an error. Fields a Job may carry but our examples do not use are listed so that a
// correct manifest is never refused; their inner shapes are not checked.
import { z } from 'zod';

const name = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a DNS-1123 label').max(63);
const quantity = z.union([z.string().regex(/^[0-9.]+(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$/), z.number()]);
const labels = z.record(z.string());
const any = z.unknown();

const ObjectMeta = z
  .object({ name: name.optional(), generateName: z.string().optional(), namespace: name.optional(), labels: labels.optional(), annotations: labels.optional() })
  .strict();

const EnvVar = z
  .object({ name: z.string().min(1), value: z.string().optional(), valueFrom: any.optional() })
  .strict();

const Container = z
  .object({
    name,
    image: z.string().min(1),
    command: z.array(z.string()).optional(),
    args: z.array(z.string()).optional(),
    workingDir: z.string().optional(),
    env: z.array(EnvVar).optional(),
    envFrom: z.array(any).optional(),
    imagePullPolicy: z.enum(['Always', 'Never', 'IfNotPresent']).optional(),
    ports: z.array(any).optional(),
    resources: z
      .object({ limits: z.record(quantity).optional(), requests: z.record(quantity).optional(), claims: z.array(any).optional() })
      .strict()
      .optional(),
    volumeMounts: z
      .array(z.object({ name, mountPath: z.string().startsWith('/'), readOnly: z.boolean().optional(), subPath: z.string().optional(), mountPropagation: z.string().optional() }).strict())
      .optional(),
    securityContext: any.optional(),
    stdin: z.boolean().optional(),
    tty: z.boolean().optional(),
    terminationMessagePath: z.string().optional(),
    terminationMessagePolicy: z.enum(['File', 'FallbackToLogsOnError']).optional(),
  })
  .strict();

const Volume = z
  .object({
    name,
    persistentVolumeClaim: z.object({ claimName: z.string().min(1), readOnly: z.boolean().optional() }).strict().optional(),
    emptyDir: any.optional(),
    hostPath: any.optional(),
    nfs: any.optional(),
    configMap: any.optional(),
    secret: any.optional(),
  })
  .strict();

const PodSpec = z
  .object({
    containers: z.array(Container).min(1),
    initContainers: z.array(Container).optional(),
    // A Job's pods may not restart always (the API refuses "Always" in a Job template).
    restartPolicy: z.enum(['Never', 'OnFailure']),
    volumes: z.array(Volume).optional(),
    nodeSelector: labels.optional(),
    affinity: any.optional(),
    tolerations: z.array(any).optional(),
    serviceAccountName: z.string().optional(),
    securityContext: any.optional(),
    imagePullSecrets: z.array(any).optional(),
    activeDeadlineSeconds: z.number().int().positive().optional(),
    terminationGracePeriodSeconds: z.number().int().nonnegative().optional(),
    priorityClassName: z.string().optional(),
    subdomain: z.string().optional(),
    hostname: z.string().optional(),
  })
  .strict();

const JobSpec = z
  .object({
    template: z.object({ metadata: ObjectMeta.optional(), spec: PodSpec }).strict(),
    completionMode: z.enum(['NonIndexed', 'Indexed']).optional(),
    completions: z.number().int().nonnegative().optional(),
    parallelism: z.number().int().nonnegative().optional(),
    backoffLimit: z.number().int().nonnegative().optional(),
    backoffLimitPerIndex: z.number().int().nonnegative().optional(),
    maxFailedIndexes: z.number().int().nonnegative().optional(),
    activeDeadlineSeconds: z.number().int().positive().optional(),
    ttlSecondsAfterFinished: z.number().int().nonnegative().optional(),
    suspend: z.boolean().optional(),
    manualSelector: z.boolean().optional(),
    selector: any.optional(),
    podFailurePolicy: any.optional(),
    podReplacementPolicy: z.enum(['TerminatingOrFailed', 'Failed']).optional(),
    successPolicy: any.optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    // The API's own rules for indexed jobs.
    if (s.completionMode === 'Indexed' && s.completions === undefined) ctx.addIssue({ code: 'custom', path: ['completions'], message: 'an Indexed Job needs completions' });
    if ((s.backoffLimitPerIndex !== undefined || s.maxFailedIndexes !== undefined) && s.completionMode !== 'Indexed')
      ctx.addIssue({ code: 'custom', path: ['backoffLimitPerIndex'], message: 'only for Indexed Jobs' });
  });

export const JobSchema = z
  .object({
    apiVersion: z.literal('batch/v1'),
    kind: z.literal('Job'),
    metadata: ObjectMeta.extend({ name }).strict(),
    spec: JobSpec,
  })
  .strict();
export type Job = z.infer<typeof JobSchema>;
