-- CreateTable
CREATE TABLE "Replica" (
    "holder" TEXT NOT NULL,
    "renewedAt" TIMESTAMP(3) NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Replica_pkey" PRIMARY KEY ("holder")
);

-- CreateIndex
CREATE INDEX "Replica_expiresAt_idx" ON "Replica"("expiresAt");
