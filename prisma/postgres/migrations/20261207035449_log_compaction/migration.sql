-- CreateTable
CREATE TABLE "LogCompaction" (
    "log" TEXT NOT NULL,
    "floor" INTEGER NOT NULL DEFAULT 0,
    "compactedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "LogCompaction_pkey" PRIMARY KEY ("log")
);
