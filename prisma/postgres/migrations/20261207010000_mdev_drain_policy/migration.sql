-- AlterTable
ALTER TABLE "Mdev" ADD COLUMN "drain" TEXT;
