-- CreateTable
CREATE TABLE "Host" (
    "name" TEXT NOT NULL,
    "driver" TEXT NOT NULL,
    "profile" TEXT,
    "machineId" TEXT NOT NULL,
    "bootId" TEXT NOT NULL,
    "features" TEXT NOT NULL DEFAULT '[]',
    "maxAdapterId" INTEGER NOT NULL,
    "maxDomainId" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Host_pkey" PRIMARY KEY ("name")
);

-- CreateTable
CREATE TABLE "HostMasks" (
    "host" TEXT NOT NULL,
    "apmask" TEXT NOT NULL,
    "aqmask" TEXT NOT NULL,
    "generation" INTEGER NOT NULL DEFAULT 1,
    "resourceVersion" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT '{}',
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "HostMasks_pkey" PRIMARY KEY ("host")
);

-- CreateTable
CREATE TABLE "Mdev" (
    "host" TEXT NOT NULL,
    "uuid" TEXT NOT NULL,
    "adapters" TEXT NOT NULL,
    "domains" TEXT NOT NULL,
    "controlDomains" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "generation" INTEGER NOT NULL DEFAULT 1,
    "resourceVersion" TEXT NOT NULL,
    "owner" TEXT,
    "origin" TEXT NOT NULL DEFAULT 'apmatrix',
    "deletionRequestedAt" TIMESTAMP(3),
    "force" BOOLEAN NOT NULL DEFAULT false,
    "status" TEXT NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Mdev_pkey" PRIMARY KEY ("host","uuid")
);

-- CreateTable
CREATE TABLE "MdevLabel" (
    "host" TEXT NOT NULL,
    "uuid" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "value" TEXT NOT NULL,

    CONSTRAINT "MdevLabel_pkey" PRIMARY KEY ("host","uuid","key")
);

-- CreateTable
CREATE TABLE "Event" (
    "seq" SERIAL NOT NULL,
    "time" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "host" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "message" TEXT NOT NULL DEFAULT '',
    "requestId" TEXT,
    "actor" TEXT,
    "data" TEXT NOT NULL DEFAULT '{}',

    CONSTRAINT "Event_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "AuditRecord" (
    "id" SERIAL NOT NULL,
    "time" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "target" TEXT NOT NULL,
    "outcome" TEXT NOT NULL,
    "requestId" TEXT,
    "detail" TEXT NOT NULL DEFAULT '{}',

    CONSTRAINT "AuditRecord_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "JournalEntry" (
    "id" SERIAL NOT NULL,
    "host" TEXT NOT NULL,
    "reconcileId" TEXT NOT NULL,
    "step" INTEGER NOT NULL,
    "operation" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'planned',
    "error" TEXT,
    "time" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "JournalEntry_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "IdempotencyKey" (
    "scope" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "requestHash" TEXT NOT NULL,
    "responseStatus" INTEGER NOT NULL,
    "responseBody" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "IdempotencyKey_pkey" PRIMARY KEY ("scope","key")
);

-- CreateTable
CREATE TABLE "Lease" (
    "host" TEXT NOT NULL,
    "holder" TEXT NOT NULL,
    "fencingToken" INTEGER NOT NULL,
    "acquiredAt" TIMESTAMP(3) NOT NULL,
    "renewedAt" TIMESTAMP(3) NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Lease_pkey" PRIMARY KEY ("host")
);

-- CreateIndex
CREATE INDEX "Mdev_host_owner_idx" ON "Mdev"("host", "owner");

-- CreateIndex
CREATE INDEX "MdevLabel_key_value_idx" ON "MdevLabel"("key", "value");

-- CreateIndex
CREATE INDEX "Event_host_seq_idx" ON "Event"("host", "seq");

-- CreateIndex
CREATE INDEX "AuditRecord_target_id_idx" ON "AuditRecord"("target", "id");

-- CreateIndex
CREATE INDEX "JournalEntry_host_state_idx" ON "JournalEntry"("host", "state");

-- CreateIndex
CREATE UNIQUE INDEX "JournalEntry_reconcileId_step_key" ON "JournalEntry"("reconcileId", "step");

-- CreateIndex
CREATE INDEX "IdempotencyKey_expiresAt_idx" ON "IdempotencyKey"("expiresAt");

-- AddForeignKey
ALTER TABLE "HostMasks" ADD CONSTRAINT "HostMasks_host_fkey" FOREIGN KEY ("host") REFERENCES "Host"("name") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Mdev" ADD CONSTRAINT "Mdev_host_fkey" FOREIGN KEY ("host") REFERENCES "Host"("name") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "MdevLabel" ADD CONSTRAINT "MdevLabel_host_uuid_fkey" FOREIGN KEY ("host", "uuid") REFERENCES "Mdev"("host", "uuid") ON DELETE CASCADE ON UPDATE CASCADE;
