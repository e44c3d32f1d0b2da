-- CreateTable
CREATE TABLE "Replica" (
    "holder" TEXT NOT NULL PRIMARY KEY,
    "renewedAt" DATETIME NOT NULL,
    "expiresAt" DATETIME NOT NULL
);

-- CreateIndex
CREATE INDEX "Replica_expiresAt_idx" ON "Replica"("expiresAt");
